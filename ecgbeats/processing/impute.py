"""Missing samples in beats: a seeded missingness model and imputation methods.

Two kinds of absence are kept apart. The zero padding after ``length`` is structural: it is no
signal, not 0 mV, and no method here ever fills it (the feature groups decide how models see it:
``samples`` as zeros, ``samples_masked`` as NaN). Lost samples *inside* the beat (lead-off,
saturation, packet loss) are NaN; ``simulate_gaps`` draws them realistically and ``impute`` fills
them with one of ``METHODS``:

- ``none``: leave NaN (LightGBM routes missing values itself);
- ``zero``: 0, what a naive pipeline does (the scaled signal's minimum, not its baseline);
- ``linear``: straight lines between the nearest known samples (constant beyond the ends);
- ``pchip``: shape-preserving cubic spline through the known samples;
- ``knn``: the mean of the ``k`` nearest training beats (nan-Euclidean over the known samples),
  fitted on training beats only.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ecgbeats.data.beats import BEAT_SAMPLES
from ecgbeats.data.dataset import SAMPLE_COLUMNS

METHODS = ("none", "zero", "linear", "pchip", "knn")


@dataclass(frozen=True)
class GapModel:
    """Missingness inside the unpadded beat: scattered dropouts and contiguous gaps.

    ``dropout_rate``: probability that any one sample is lost on its own (packet loss);
    ``gaps_per_beat``: Poisson mean number of contiguous gaps (lead-off, saturation);
    ``gap_length``: mean gap length in samples (geometric lengths, at least 1; 120 samples = 1 s).
    """

    dropout_rate: float = 0.0
    gaps_per_beat: float = 0.0
    gap_length: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.dropout_rate < 1 or self.gaps_per_beat < 0 or self.gap_length < 0:
            raise ValueError("dropout_rate in [0, 1), gaps_per_beat >= 0 and gap_length >= 0 required")


def unpadded_mask(lengths: np.ndarray) -> np.ndarray:
    """True where a row holds signal (before its length, capped at 187)."""
    lengths = np.clip(np.asarray(lengths, dtype=np.int64), 0, BEAT_SAMPLES)
    return np.arange(BEAT_SAMPLES)[None, :] < lengths[:, None]


def simulate_gaps(samples: np.ndarray, lengths: np.ndarray, model: GapModel, seed: int) -> np.ndarray:
    """A boolean mask (True = lost) inside the unpadded part of each beat; the padding is never lost."""
    rng = np.random.default_rng(seed)
    n = len(samples)
    inside = unpadded_mask(lengths)
    lost = (rng.random((n, BEAT_SAMPLES)) < model.dropout_rate) & inside
    if model.gaps_per_beat > 0 and model.gap_length > 0:
        counts = rng.poisson(model.gaps_per_beat, n)
        rows = np.repeat(np.arange(n), counts)
        usable = np.clip(np.asarray(lengths)[rows], 1, BEAT_SAMPLES)
        starts = (rng.random(len(rows)) * usable).astype(np.int64)
        sizes = rng.geometric(1.0 / max(model.gap_length, 1.0), len(rows))
        for row, start, size in zip(rows, starts, sizes, strict=True):
            lost[row, start : start + size] = True
        lost &= inside
    lost[:, 0] = False  # the R peak (sample 0) located the beat, so it was recorded
    return lost


def apply_gaps(samples: np.ndarray, lost: np.ndarray) -> np.ndarray:
    out = np.asarray(samples, dtype=np.float64).copy()
    out[lost] = np.nan
    return out


class KnnBeatImputer:
    """Fills lost samples with the mean of the ``k`` nearest training beats (padding masked out)."""

    def __init__(self, k: int = 5, reference_beats: int = 5000, seed: int = 0) -> None:
        self.k, self.reference_beats, self.seed = k, reference_beats, seed
        self.reference: np.ndarray | None = None

    def fit(self, samples: np.ndarray, lengths: np.ndarray) -> KnnBeatImputer:
        rng = np.random.default_rng(self.seed)
        rows = rng.permutation(len(samples))[: self.reference_beats]
        if len(rows) < self.k:
            raise ValueError(f"knn imputation with k={self.k} needs at least {self.k} reference beats, got {len(rows)}")
        reference = np.asarray(samples, dtype=np.float64)[rows].copy()
        reference[~unpadded_mask(np.asarray(lengths)[rows])] = np.nan
        self.reference = reference
        return self

    def transform(self, samples: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        if self.reference is None:
            raise RuntimeError("KnnBeatImputer.fit first")
        out = np.asarray(samples, dtype=np.float64).copy()
        holes = np.isnan(out) & unpadded_mask(lengths)
        todo = np.flatnonzero(holes.any(axis=1))
        if len(todo) == 0:
            return out
        ref = self.reference
        ref_known = ~np.isnan(ref)
        ref0 = np.nan_to_num(ref)
        for block in np.array_split(todo, max(1, len(todo) // 512)):
            x = out[block]
            known = ~np.isnan(x) & unpadded_mask(np.asarray(lengths)[block])
            x0 = np.where(known, x, 0.0)
            # nan-Euclidean over the samples known in both: sum of squares via matrix products
            both = known.astype(np.float64) @ ref_known.T.astype(np.float64)
            sq = (x0**2) @ ref_known.T + known @ (ref0**2).T - 2 * x0 @ ref0.T
            dist = np.where(both > 0, sq / np.maximum(both, 1) * BEAT_SAMPLES, np.inf)
            nearest = np.argpartition(dist, min(self.k, len(ref) - 1), axis=1)[:, : self.k]
            neighbours = ref[nearest]  # (b, k, 187)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # no neighbour covers a position: NaN
                fill = np.nanmean(neighbours, axis=1)
            need = holes[block]
            filled = np.where(need, fill, x)
            # a position no neighbour covers: fall back to linear interpolation
            out[block] = filled
        still = np.isnan(out) & holes
        if still.any():
            out = linear_fill(out, lengths)
        return out


def linear_fill(samples: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Linear interpolation over the NaN inside each beat's unpadded part (constant beyond the ends)."""
    out = np.asarray(samples, dtype=np.float64).copy()
    inside = unpadded_mask(lengths)
    for row in np.flatnonzero((np.isnan(out) & inside).any(axis=1)):
        n = int(inside[row].sum())
        x = out[row, :n]
        known = ~np.isnan(x)
        if known.sum() == 0:
            out[row, :n] = 0.0
        else:
            x[~known] = np.interp(np.flatnonzero(~known), np.flatnonzero(known), x[known])
    return out


def pchip_fill(samples: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Shape-preserving cubic (PCHIP) interpolation over the NaN inside each beat; linear if < 3 known."""
    from scipy.interpolate import PchipInterpolator

    out = np.asarray(samples, dtype=np.float64).copy()
    inside = unpadded_mask(lengths)
    for row in np.flatnonzero((np.isnan(out) & inside).any(axis=1)):
        n = int(inside[row].sum())
        x = out[row, :n]
        known = np.flatnonzero(~np.isnan(x))
        missing = np.flatnonzero(np.isnan(x))
        if len(known) >= 3:
            x[missing] = PchipInterpolator(known, x[known], extrapolate=False)(missing)
        leftover = np.isnan(x)
        if leftover.any():  # beyond the first or last known sample: hold the nearest value
            x[leftover] = np.interp(np.flatnonzero(leftover), known, x[known]) if len(known) else 0.0
    return out


def check_beats(samples: np.ndarray, lengths: np.ndarray) -> None:
    """Refuse what no method can fill: a wrong shape, or a beat whose unpadded part is all lost."""
    if samples.ndim != 2 or samples.shape[1] != BEAT_SAMPLES:
        raise ValueError(f"beats must be rows of {BEAT_SAMPLES} samples, got an array of shape {samples.shape}")
    lengths = np.asarray(lengths)
    if lengths.shape != (len(samples),):
        raise ValueError(f"{len(samples)} beats but {lengths.size} lengths")
    unpadded = unpadded_mask(lengths)
    empty = np.flatnonzero(~(unpadded & ~np.isnan(samples)).any(axis=1))
    if len(empty):
        raise ValueError(
            f"{len(empty)} beat(s) have no sample left before the padding, nothing to impute from "
            f"(rows {empty[:5].tolist()}{' ...' if len(empty) > 5 else ''})"
        )


def impute(samples: np.ndarray, lengths: np.ndarray, method: str, *, knn: KnnBeatImputer | None = None) -> np.ndarray:
    """Fill the NaN inside the unpadded part with ``method``; the padding is left as it was."""
    if method not in METHODS:
        raise ValueError(f"imputation method must be one of {METHODS}, got {method!r}")
    samples = np.asarray(samples, dtype=np.float64)
    check_beats(samples, lengths)
    if method == "none":
        return samples.copy()
    if method == "zero":
        return np.where(np.isnan(samples) & unpadded_mask(lengths), 0.0, samples)
    if method == "linear":
        return linear_fill(samples, lengths)
    if method == "pchip":
        return pchip_fill(samples, lengths)
    if knn is None:
        raise ValueError("knn imputation needs an imputer fitted on the training beats")
    return knn.transform(samples, lengths)


def impute_frame(beats: pd.DataFrame, method: str, *, knn: KnnBeatImputer | None = None) -> pd.DataFrame:
    """The beat table with lost samples (NaN in the unpadded part) filled; padding untouched."""
    missing = [c for c in (*SAMPLE_COLUMNS, "length") if c not in beats]
    if missing:
        raise ValueError(f"a beat table needs {BEAT_SAMPLES} sample columns and length; missing {missing[:5]}")
    samples = beats[SAMPLE_COLUMNS].to_numpy(dtype=np.float64)
    lengths = beats["length"].to_numpy()
    if not np.isnan(samples).any():
        return beats
    out = beats.copy()
    out[SAMPLE_COLUMNS] = impute(samples, lengths, method, knn=knn).astype(np.float32)
    return out


def reconstruction_error(truth: np.ndarray, imputed: np.ndarray, lost: np.ndarray) -> dict[str, float]:
    """RMSE and MAE over the lost samples only (NaN left by ``none`` excluded)."""
    diff = (np.asarray(imputed) - np.asarray(truth))[lost]
    diff = diff[~np.isnan(diff)]
    if len(diff) == 0:
        return {"rmse": float("nan"), "mae": float("nan"), "samples": 0}
    return {"rmse": float(np.sqrt(np.mean(diff**2))), "mae": float(np.mean(np.abs(diff))), "samples": int(len(diff))}


def gap_levels(mean_lengths: Sequence[float], gaps_per_beat: float, dropout_rate: float) -> list[GapModel]:
    return [GapModel(dropout_rate=dropout_rate if g > 0 else 0.0, gaps_per_beat=gaps_per_beat if g > 0 else 0.0,
                     gap_length=g) for g in mean_lengths]  # fmt: skip
