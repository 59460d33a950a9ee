"""Class-aware augmentation of the training beats with physiologically meaningful transforms.

Every transform works on the unpadded part of a beat (the signal, not its zero padding), and the
result is min-max scaled and padded exactly as ``ingest`` does, so a synthetic beat has the same
format as a real one. ``severity`` scales each transform's magnitude; ``severity=0`` is the
identity (up to the final scaling, which a real beat already satisfies). Everything is seeded.

Transforms and why they are physiological:

- ``amplitude``: a smooth random gain along the beat (electrode contact, respiration and body
  position change the relative sizes of QRS and T waves; a uniform gain alone would be undone by
  the min-max scaling).
- ``noise``: white Gaussian noise at a given SNR (muscle artefact, amplifier noise).
- ``baseline_wander``: a slow sinusoid (respiration and movement, 0.1-0.5 Hz).
- ``time_stretch``: resampling by a factor near 1 (a change of heart rate); the RR intervals and
  the length are scaled by the same factor, so the rhythm ratios stay as they were.
- ``time_shift``: the window starts a few samples early or late (R-peak detector jitter).
- ``powerline``: mains interference (60 Hz in the MIT-BIH recordings; at the 120 Hz rows a 60 Hz
  tone aliases to an alternating pattern, exactly what decimating without a filter gives).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from ecgbeats.data.aami import CLASS_NAMES
from ecgbeats.data.beats import BEAT_FS, BEAT_SAMPLES
from ecgbeats.data.dataset import SAMPLE_COLUMNS

log = logging.getLogger(__name__)

Transform = Callable[..., tuple[np.ndarray, float, int]]


def amplitude(x: np.ndarray, rng: np.random.Generator, severity: float = 1.0, *, sigma: float = 0.15,
              knots: int = 4) -> tuple[np.ndarray, float, int]:  # fmt: skip
    """Smooth random gain around the beat's baseline (median), knots spread over the beat."""
    gains = 1.0 + severity * sigma * rng.standard_normal(knots + 2)
    curve = np.interp(np.linspace(0, knots + 1, len(x)), np.arange(knots + 2), gains)
    base = np.median(x)
    return base + (x - base) * curve, 1.0, 0


def noise(x: np.ndarray, rng: np.random.Generator, severity: float = 1.0, *, snr_db: float = 25.0
          ) -> tuple[np.ndarray, float, int]:  # fmt: skip
    """Additive white Gaussian noise at ``snr_db`` (lower SNR at higher severity: power × severity)."""
    power = float(np.var(x))
    sd = np.sqrt(power / 10 ** (snr_db / 10)) * severity
    return x + sd * rng.standard_normal(len(x)), 1.0, 0


def baseline_wander(x: np.ndarray, rng: np.random.Generator, severity: float = 1.0, *, amplitude: float = 0.1,
                    freq_hz: Sequence[float] = (0.1, 0.5)) -> tuple[np.ndarray, float, int]:  # fmt: skip
    """A slow sinusoid of ``amplitude`` × the beat's range, frequency drawn from ``freq_hz``."""
    low, high = freq_hz
    f = rng.uniform(low, high)
    t = np.arange(len(x)) / BEAT_FS
    span = float(np.ptp(x)) or 1.0
    return x + severity * amplitude * span * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)), 1.0, 0


def time_stretch(x: np.ndarray, rng: np.random.Generator, severity: float = 1.0, *, max_change: float = 0.1
                 ) -> tuple[np.ndarray, float, int]:  # fmt: skip
    """Linear resampling by 1 ± ``max_change`` (heart-rate change); returns the factor for RR and length."""
    return stretch(x, 1.0 + severity * rng.uniform(-max_change, max_change))


def stretch(x: np.ndarray, factor: float) -> tuple[np.ndarray, float, int]:
    """Linear resampling of ``x`` to ``factor`` times its length (the transform result of ``time_stretch``)."""
    n_new = max(2, int(round(len(x) * factor)))
    if n_new == len(x):
        return x.copy(), 1.0, 0
    return np.interp(np.linspace(0, len(x) - 1, n_new), np.arange(len(x)), x), n_new / len(x), 0


def time_shift(x: np.ndarray, rng: np.random.Generator, severity: float = 1.0, *, max_samples: int = 3
               ) -> tuple[np.ndarray, float, int]:  # fmt: skip
    """Start the window up to ``max_samples`` late (drop samples) or early (repeat the first)."""
    k = int(round(severity * rng.integers(-max_samples, max_samples + 1)))
    if k > 0 and len(x) - k >= 2:
        return x[k:].copy(), 1.0, k
    if k < 0:
        return np.concatenate([np.full(-k, x[0]), x]), 1.0, k
    return x.copy(), 1.0, 0


def powerline(x: np.ndarray, rng: np.random.Generator, severity: float = 1.0, *, amplitude: float = 0.05,
              freq_hz: float = 60.0) -> tuple[np.ndarray, float, int]:  # fmt: skip
    """Mains interference of ``amplitude`` × the beat's range at ``freq_hz``, sampled at the row rate."""
    t = np.arange(len(x)) / BEAT_FS
    span = float(np.ptp(x)) or 1.0
    return x + severity * amplitude * span * np.sin(2 * np.pi * freq_hz * t + rng.uniform(0, 2 * np.pi)), 1.0, 0


TRANSFORMS: dict[str, Transform] = {
    "amplitude": amplitude,
    "noise": noise,
    "baseline_wander": baseline_wander,
    "time_stretch": time_stretch,
    "time_shift": time_shift,
    "powerline": powerline,
}


@dataclass(frozen=True)
class AugmentConfig:
    """What to add: classes below ``largest / target_ratio`` are filled up to it, at most ×``max_factor``."""

    target_ratio: float = 10.0
    min_beats: int = 50
    max_factor: float = 10.0
    classes: tuple[str, ...] = ("S", "V", "F")
    transforms: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: {name: {} for name in TRANSFORMS})
    per_beat: int = 2
    severity: float = 1.0
    seed: int = 42

    def __post_init__(self) -> None:
        unknown = [t for t in self.transforms if t not in TRANSFORMS]
        if unknown:
            raise ValueError(f"unknown transforms {unknown}; known: {list(TRANSFORMS)}")
        bad = [c for c in self.classes if c not in CLASS_NAMES]
        if bad:
            raise ValueError(f"unknown classes {bad}; known: {list(CLASS_NAMES)}")
        if not self.transforms or self.per_beat < 1:
            raise ValueError("augmentation needs at least one transform and per_beat >= 1")
        if self.target_ratio <= 0 or self.max_factor < 1:
            raise ValueError("target_ratio must be > 0 and max_factor >= 1")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> AugmentConfig:
        keys = ("target_ratio", "min_beats", "max_factor", "per_beat", "severity", "seed")
        kwargs: dict[str, Any] = {k: params[k] for k in keys if k in params}
        if "classes" in params:
            kwargs["classes"] = tuple(params["classes"])
        if "transforms" in params:
            kwargs["transforms"] = {name: dict(kw or {}) for name, kw in params["transforms"].items()}
        return cls(**kwargs)


def apply_transform(
    name: str, signal: np.ndarray, rng: np.random.Generator, severity: float = 1.0, **kwargs: Any
) -> tuple[np.ndarray, float, int]:
    """One transform on an unpadded signal: (new signal, RR/length factor, samples shifted)."""
    return TRANSFORMS[name](np.asarray(signal, dtype=np.float64), rng, severity, **kwargs)


def scale_range(kept: np.ndarray, length: int) -> tuple[float, float]:
    """The range a changed beat is scaled back onto: [0, 1], as ``ingest`` scales a whole beat, except
    for a beat cut at 187 samples, which was scaled over its full length (its extremes may lie in the
    part that was cut off): it keeps the range its kept samples ``kept`` had."""
    return (float(kept.min()), float(kept.max())) if length > BEAT_SAMPLES else (0.0, 1.0)


def rescale_pad(signal: np.ndarray, low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """``signal`` min-max scaled onto [``low``, ``high``] and zero-padded (or cut) to 187 samples."""
    smin, smax = signal.min(), signal.max()
    scaled = np.full_like(signal, low) if smax == smin else low + (signal - smin) / (smax - smin) * (high - low)
    row = np.zeros(BEAT_SAMPLES, dtype=np.float32)
    kept = min(len(scaled), BEAT_SAMPLES)
    row[:kept] = scaled[:kept]
    return row


def synthesize(samples: np.ndarray, length: int, names: Sequence[str], config: AugmentConfig,
               rng: np.random.Generator) -> tuple[np.ndarray, int, float]:  # fmt: skip
    """A synthetic beat from one beat's 187 samples and length: (187 samples, length, RR factor)."""
    steps = [partial(apply_transform, name, severity=config.severity, **config.transforms[name]) for name in names]
    return transform_beat(samples, length, steps, rng)


def transform_beat(samples: np.ndarray, length: int, steps: Sequence[Callable[..., tuple[np.ndarray, float, int]]],
                   rng: np.random.Generator) -> tuple[np.ndarray, int, float]:  # fmt: skip
    """Apply ``steps`` (each ``step(signal, rng) -> (signal, RR factor, shift)``) to a beat's unpadded part,
    then min-max scale and pad it as ``ingest`` does: (187 samples, length, RR factor)."""
    length = int(length)
    signal = np.asarray(samples, dtype=np.float64)[: max(2, min(length, BEAT_SAMPLES))]
    low, high = scale_range(signal, length)
    rr_factor, true_length = 1.0, float(length)
    for step in steps:
        signal, factor, shift = step(signal, rng)
        rr_factor *= factor
        true_length = true_length * factor - shift
    # a beat cut at 187 samples lost its end: its true length follows the transforms arithmetically
    new_length = max(len(signal), int(round(true_length))) if length > BEAT_SAMPLES else len(signal)
    return rescale_pad(signal, low, high), new_length, rr_factor


def augmentation_plan(labels: np.ndarray, config: AugmentConfig) -> dict[str, int]:
    """Synthetic beats to add per class name."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(CLASS_NAMES))
    target = int(np.ceil(counts.max() / config.target_ratio))
    plan = {}
    for i, name in enumerate(CLASS_NAMES):
        n = int(counts[i])
        if name not in config.classes or n < config.min_beats or n >= target:
            plan[name] = 0
            continue
        plan[name] = int(min(target, np.floor(n * config.max_factor)) - n)
    return plan


def augment_training(train: pd.DataFrame, config: AugmentConfig) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The training beats followed by the synthetic ones, with ``augmented`` and ``augment_transforms``.

    The original rows come first, unchanged and in order. Each source beat of a class is used
    equally often (a seeded permutation, repeated), and each synthetic beat gets ``per_beat``
    distinct transforms drawn at random.
    """
    rng = np.random.default_rng(config.seed)
    labels = train["label"].to_numpy()
    plan = augmentation_plan(labels, config)
    names = list(config.transforms)
    per_beat = min(config.per_beat, len(names))
    base = train.reset_index(drop=True)
    all_samples = base[SAMPLE_COLUMNS].to_numpy(dtype=np.float64)
    all_lengths = base["length"].to_numpy()
    synthetic: list[pd.DataFrame] = []
    transform_counts = dict.fromkeys(names, 0)
    for class_name, n_new in plan.items():
        if n_new == 0:
            continue
        sources = np.flatnonzero(labels == CLASS_NAMES.index(class_name))
        chosen = np.resize(rng.permutation(sources), n_new)
        rows = base.iloc[chosen].copy()
        samples = np.empty((n_new, BEAT_SAMPLES), dtype=np.float32)
        lengths = np.empty(n_new, dtype=np.int32)
        factors = np.empty(n_new)
        used = []
        for j, source in enumerate(chosen):
            picked = [names[k] for k in sorted(rng.choice(len(names), per_beat, replace=False))]
            samples[j], lengths[j], factors[j] = synthesize(
                all_samples[source], all_lengths[source], picked, config, rng
            )
            used.append("+".join(picked))
            for name in picked:
                transform_counts[name] += 1
        changed = {
            "length": lengths,
            **{
                c: (rows[c].to_numpy(dtype=np.float64) * factors).astype(np.float32)
                for c in ("rr_prev", "rr_next", "rr_local")
            },
            "augment_transforms": used,
            "augment_source": chosen,
        }
        rows = pd.concat(
            [rows.drop(columns=[*SAMPLE_COLUMNS, "length", "rr_prev", "rr_next", "rr_local"]).reset_index(drop=True),
             pd.DataFrame(changed), pd.DataFrame(samples, columns=SAMPLE_COLUMNS)],
            axis=1,
        )[[*base.columns, "augment_transforms", "augment_source"]]  # fmt: skip
        synthetic.append(rows)
    extra = pd.DataFrame({"augment_transforms": "", "augment_source": -1}, index=base.index)
    base = pd.concat([base, extra], axis=1)
    out = pd.concat([base, *synthetic], ignore_index=True)
    out = pd.concat([out, pd.DataFrame({"augmented": np.arange(len(out)) >= len(base)})], axis=1)
    out["augment_transforms"] = out["augment_transforms"].astype("string")
    out["augment_source"] = out["augment_source"].astype(np.int64)
    summary = {
        "added": plan,
        "before": {c: int((labels == i).sum()) for i, c in enumerate(CLASS_NAMES)},
        "after": {c: int((out["label"].to_numpy() == i).sum()) for i, c in enumerate(CLASS_NAMES)},
        "transform_uses": transform_counts,
    }
    log.info("augmentation added %s", plan)
    return out, summary
