"""Model inputs from the beat table, by named groups; the same function at training and serving time.

Groups (``FEATURE_GROUPS``) switch on and off in ``train.features``. Every group is computed from the
beat table's own columns, so the API, which builds the same table from a raw strip, gets the same
values. The ``tsfresh`` group needs the frozen selection written by the ``features`` stage
(``ecgbeats.features.tsfresh_features.TsfreshSettings``); the others need nothing but the beats.

The beat window starts at the R peak (sample 0) and runs to the next R peak plus a fifth of the
following interval, at 120 Hz; samples after ``length`` are zero padding, not signal. The domain
groups therefore look at the unpadded part only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ecgbeats.data.beats import BEAT_FS, BEAT_SAMPLES
from ecgbeats.data.dataset import SAMPLE_COLUMNS

if TYPE_CHECKING:  # pragma: no cover
    from ecgbeats.features.tsfresh_features import TsfreshSettings

RR_COLUMNS = ["rr_prev", "rr_next", "rr_local"]
FEATURE_GROUPS: dict[str, str] = {
    "samples": "the 187 scaled samples of the beat",
    "length": "samples before the zero padding (a heart-rate proxy)",
    "rr": "RR intervals (s) and their ratios to the local average rhythm",
    "rr_norm": "RR intervals relative to the local average rhythm: differences, compensatory pause, length in ms",
    "morphology": "R amplitude, S depth, QRS width estimate, T-wave region statistics, energy, slopes",
    "downsampled": "the 187 samples mean-pooled over windows of 3 (40 Hz, 63 values)",
    "samples_masked": "the 187 samples with the zero padding as missing (NaN) instead of 0",
    "tsfresh": "tsfresh features of the unpadded beat, the frozen selection of the features stage",
}
DOWNSAMPLE_FACTOR = 3
MS_PER_SAMPLE = 1000.0 / BEAT_FS
# Morphology windows, in samples at 120 Hz, measured from the R peak at sample 0
QRS_SEARCH = 18  # 150 ms: the rest of the QRS complex (R down-stroke and S wave) lies within
T_START = 12  # 100 ms after R: the T-wave region starts after the QRS
T_STOP_FRACTION = 0.5  # ... and ends half-way through the unpadded window (about 0.6 RR after R)


def build_features(
    beats: pd.DataFrame,
    groups: Sequence[str],
    *,
    tsfresh_settings: TsfreshSettings | None = None,
    tsfresh_cache: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Feature columns of ``groups`` in a fixed order; missing RR values stay NaN for LightGBM.

    ``tsfresh_settings`` is required by the ``tsfresh`` group. ``tsfresh_cache`` may hold those
    columns already extracted for exactly these rows (the features stage writes them), so training
    does not extract them twice; it must have the settings' columns, in their order.
    """
    unknown = [g for g in groups if g not in FEATURE_GROUPS]
    if unknown:
        raise ValueError(f"unknown feature groups {unknown}; known: {list(FEATURE_GROUPS)}")
    parts: list[pd.DataFrame] = []
    if "samples" in groups:
        parts.append(beats[SAMPLE_COLUMNS].astype(np.float32))
    if "samples_masked" in groups:
        masked = _masked_samples(beats)
        parts.append(pd.DataFrame(masked, columns=[f"m{c}" for c in SAMPLE_COLUMNS], index=beats.index))
    if "downsampled" in groups:
        parts.append(downsampled(beats))
    if "length" in groups:
        parts.append(beats[["length"]].astype(np.float32))
    if "rr" in groups:
        rr = beats[RR_COLUMNS].astype(np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            rr["rr_prev_ratio"] = rr["rr_prev"] / rr["rr_local"]
            rr["rr_next_ratio"] = rr["rr_next"] / rr["rr_local"]
            rr["rr_prev_next_ratio"] = rr["rr_prev"] / rr["rr_next"]
        parts.append(rr.replace([np.inf, -np.inf], np.nan))
    if "rr_norm" in groups:
        parts.append(rr_normalised(beats))
    if "morphology" in groups:
        parts.append(morphology(beats))
    if "tsfresh" in groups:
        parts.append(_tsfresh_part(beats, tsfresh_settings, tsfresh_cache))
    if not parts:
        raise ValueError("no feature group selected")
    return pd.concat([part.reset_index(drop=True) for part in parts], axis=1)


def unpadded_lengths(beats: pd.DataFrame) -> np.ndarray:
    """Samples of signal in each row: ``length`` capped at the 187 kept, at least 1."""
    return np.clip(beats["length"].to_numpy(dtype=np.int64), 1, BEAT_SAMPLES)


def _masked_samples(beats: pd.DataFrame) -> np.ndarray:
    samples = beats[SAMPLE_COLUMNS].to_numpy(dtype=np.float32).copy()
    samples[np.arange(BEAT_SAMPLES)[None, :] >= unpadded_lengths(beats)[:, None]] = np.nan
    return samples


def downsampled(beats: pd.DataFrame, factor: int = DOWNSAMPLE_FACTOR) -> pd.DataFrame:
    """Mean of every ``factor`` consecutive samples (the last window may be shorter)."""
    samples = beats[SAMPLE_COLUMNS].to_numpy(dtype=np.float32)
    starts = np.arange(0, BEAT_SAMPLES, factor)
    pooled = np.add.reduceat(samples, starts, axis=1) / np.diff(np.append(starts, BEAT_SAMPLES))
    return pd.DataFrame(
        pooled.astype(np.float32), columns=[f"ds{i:02d}" for i in range(len(starts))], index=beats.index
    )


def rr_normalised(beats: pd.DataFrame) -> pd.DataFrame:
    """Rhythm relative to the local average: prematurity and compensatory pause as differences."""
    rr_prev, rr_next, rr_local = (beats[c].to_numpy(dtype=np.float64) for c in RR_COLUMNS)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = {
            "rr_prev_minus_local": rr_prev - rr_local,
            "rr_next_minus_local": rr_next - rr_local,
            "rr_next_minus_prev": rr_next - rr_prev,
            "rr_pause_ratio": (rr_prev + rr_next) / (2 * rr_local),
            "rr_prev_next_ratio_local": (rr_next - rr_prev) / rr_local,
            "length_ms": beats["length"].to_numpy(dtype=np.float64) * MS_PER_SAMPLE,
        }
    frame = pd.DataFrame(out, index=beats.index).astype(np.float32)
    return frame.replace([np.inf, -np.inf], np.nan)


def _first_true(condition: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Index of the first True per row, or ``fallback`` where there is none."""
    found = condition.any(axis=1)
    return np.where(found, condition.argmax(axis=1), fallback)


def morphology(beats: pd.DataFrame) -> pd.DataFrame:
    """Shape features of the unpadded beat, relative to its baseline (the median sample).

    The window starts at the R peak, so the R amplitude is sample 0 above the baseline; the QRS
    width is estimated as the time from R until the signal is back near the baseline and flat (the
    second half of the QRS, the part in the window); the T-wave region runs from 100 ms after R to
    half-way through the unpadded window.
    """
    samples = beats[SAMPLE_COLUMNS].to_numpy(dtype=np.float64)
    n = unpadded_lengths(beats)
    positions = np.arange(BEAT_SAMPLES)[None, :]
    inside = positions < n[:, None]
    masked = np.where(inside, samples, np.nan)
    with np.errstate(all="ignore"):
        baseline = np.nanmedian(masked, axis=1)
        centred = masked - baseline[:, None]
        centred_zero = np.where(inside, centred, 0.0)
        head = centred[:, :QRS_SEARCH]
        r_amp = centred[:, 0]
        s_min = np.nanmin(head, axis=1)
        s_idx = np.nanargmin(np.where(np.isnan(head), np.inf, head), axis=1)
        half = centred[:, : QRS_SEARCH * 2] < (r_amp / 2)[:, None]
        r_halfwidth = _first_true(half, np.full(len(n), QRS_SEARCH * 2))
        diff = np.diff(samples, axis=1)
        diff_inside = positions[:, 1:] < n[:, None]
        abs_diff = np.where(diff_inside, np.abs(diff), np.nan)
        # QRS end: from the S minimum on, the first sample near the baseline with a flat slope
        near = (np.abs(centred[:, 1 : QRS_SEARCH * 2]) < 0.1) & (abs_diff[:, : QRS_SEARCH * 2 - 1] < 0.03)
        near &= positions[:, 1 : QRS_SEARCH * 2] >= s_idx[:, None]
        qrs_end = _first_true(near, np.full(len(n), QRS_SEARCH * 2 - 1)) + 1
        t_stop = np.maximum(T_START + 2, np.floor(n * T_STOP_FRACTION).astype(np.int64))
        t_mask = (positions >= T_START) & (positions < t_stop[:, None]) & inside
        t_region = np.where(t_mask, centred, np.nan)
        t_max = np.nanmax(t_region, axis=1)
        t_min = np.nanmin(t_region, axis=1)
        t_argmax = np.nanargmax(np.where(t_mask, centred, -np.inf), axis=1)
        energy = np.nansum(centred_zero**2, axis=1) / n
        qrs_energy = np.nanmean(centred[:, :T_START] ** 2, axis=1)
        out = {
            "baseline": baseline,
            "r_amp": r_amp,
            "s_depth": s_min,
            "s_time_ms": s_idx * MS_PER_SAMPLE,
            "r_halfwidth_ms": r_halfwidth * MS_PER_SAMPLE,
            "qrs_end_ms": qrs_end * MS_PER_SAMPLE,
            "qrs_area": np.nansum(np.abs(centred[:, :T_START]), axis=1),
            "t_max": t_max,
            "t_min": t_min,
            "t_mean": np.nanmean(t_region, axis=1),
            "t_std": np.nanstd(t_region, axis=1),
            "t_peak_ms": t_argmax * MS_PER_SAMPLE,
            "t_polarity": np.where(np.abs(t_max) >= np.abs(t_min), t_max, t_min),
            "energy": energy,
            "qrs_energy_ratio": qrs_energy / np.where(energy > 0, energy, np.nan),
            "r_downslope": np.nanmin(diff[:, : QRS_SEARCH // 2], axis=1),
            "qrs_max_upslope": np.nanmax(diff[:, :QRS_SEARCH], axis=1),
            "max_abs_slope": np.nanmax(abs_diff, axis=1),
            "line_length": np.nansum(abs_diff, axis=1) / n,
            "unpadded_mean": np.nanmean(masked, axis=1),
            "unpadded_std": np.nanstd(masked, axis=1),
            "tail_max": np.nanmax(np.where(positions >= (n * 0.6)[:, None], masked, np.nan), axis=1),
        }
    frame = pd.DataFrame(out, index=beats.index).astype(np.float32)
    return frame.replace([np.inf, -np.inf], np.nan)


def _tsfresh_part(beats: pd.DataFrame, settings: TsfreshSettings | None, cache: pd.DataFrame | None) -> pd.DataFrame:
    if settings is None:
        raise ValueError("the tsfresh feature group needs the frozen tsfresh settings of the features stage")
    if cache is not None:
        if len(cache) != len(beats):
            raise ValueError(f"tsfresh cache has {len(cache)} rows for {len(beats)} beats")
        missing = [c for c in settings.columns if c not in cache.columns]
        if missing:
            raise ValueError(f"tsfresh cache lacks {len(missing)} selected columns, e.g. {missing[:3]}")
        return cache[settings.columns].astype(np.float32).set_axis(beats.index)
    from ecgbeats.features.tsfresh_features import extract_selected

    return extract_selected(beats, settings, n_jobs=0).set_axis(beats.index)


def protocol_groups(spec: Sequence[str] | Mapping[str, Sequence[str]], protocol: str) -> list[str]:
    """The feature groups of a protocol from a ``train.features`` value: one list for every protocol,
    or one list per protocol."""
    if isinstance(spec, Mapping):
        if protocol not in spec:
            raise KeyError(f"train.features has no entry for protocol {protocol!r}; it has {sorted(spec)}")
        return list(spec[protocol])
    return list(spec)


def frozen_tsfresh(groups: Sequence[str], tsfresh_dir: Path | None) -> TsfreshSettings | None:
    """The features stage's frozen tsfresh selection when ``groups`` has the tsfresh group (else None)."""
    from ecgbeats.features.tsfresh_features import SETTINGS_FILE, TsfreshSettings

    if "tsfresh" not in groups:
        return None
    if tsfresh_dir is None:
        raise ValueError("the feature groups include tsfresh: pass the features stage's directory (--tsfresh)")
    return TsfreshSettings.from_json(tsfresh_dir / SETTINGS_FILE)


def split_features(beats: pd.DataFrame, groups: Sequence[str], tsfresh_dir: Path | None, split: str) -> pd.DataFrame:
    """Model inputs of one split; tsfresh columns come from the features stage's extraction of that split."""
    settings = frozen_tsfresh(groups, tsfresh_dir)
    cache = pd.read_parquet(tsfresh_dir / f"{split}.parquet") if settings is not None and tsfresh_dir else None
    return build_features(beats, groups, tsfresh_settings=settings, tsfresh_cache=cache)
