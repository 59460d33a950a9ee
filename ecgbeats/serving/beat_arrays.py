"""A beat-row bundle's model inputs from plain arrays, without pandas: the service's one-beat path.

``ecgbeats.features.groups.build_features`` is the definition of the features (training, the batch
CLI and ``Scorer.score_beats`` use it). On a handful of beats its pandas bookkeeping (column lookups
by name, concatenation, reindexing, ``replace``) costs about ten times the arithmetic, so the service
builds the same values here from the arrays it already holds: the same numpy operations in the same
order and precision, written into one float32 matrix in the bundle's column order.

Two guards keep the two definitions the same: :func:`array_features` offers this path only for groups
it implements (a bundle with tsfresh features stays on ``build_features``), and it first compares
the two on a fixed set of check beats, bit for bit, falling back to ``build_features`` (with a
warning) on any difference. ``tests/api/test_fast_path.py`` compares them on real beats.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from ecgbeats.data.beats import BEAT_SAMPLES
from ecgbeats.data.dataset import SAMPLE_COLUMNS
from ecgbeats.features.groups import (
    DOWNSAMPLE_FACTOR,
    MS_PER_SAMPLE,
    QRS_SEARCH,
    T_START,
    T_STOP_FRACTION,
    build_features,
)

log = logging.getLogger(__name__)

RR_NAMES = ("rr_prev", "rr_next", "rr_local")
SUPPORTED_GROUPS = frozenset({"samples", "samples_masked", "downsampled", "length", "rr", "rr_norm", "morphology"})
CHECK_BEATS = 64  # beats in the start-up comparison with build_features

# the array form of a beat table: float32 samples (n, 187) clipped to [0, 1], int32 lengths (n,),
# float32 RR intervals (n, 3) in the order of RR_NAMES, NaN where unknown; a group gives its column
# names and an (n, columns) block
Block = tuple[Sequence[str], np.ndarray]
Group = Callable[[np.ndarray, np.ndarray, np.ndarray], Block]


def _float32_no_inf(columns: Sequence[np.ndarray]) -> np.ndarray:
    # as build_features: each group's float64 values cast to float32, then infinities made missing
    block = np.column_stack(columns).astype(np.float32)
    block[np.isinf(block)] = np.nan
    return block


def _samples(samples: np.ndarray, length: np.ndarray, rr: np.ndarray) -> Block:
    return SAMPLE_COLUMNS, samples


def _unpadded(length: np.ndarray) -> np.ndarray:
    return np.clip(length.astype(np.int64), 1, BEAT_SAMPLES)


def _samples_masked(samples: np.ndarray, length: np.ndarray, rr: np.ndarray) -> Block:
    masked = samples.copy()
    masked[np.arange(BEAT_SAMPLES)[None, :] >= _unpadded(length)[:, None]] = np.nan
    return [f"m{name}" for name in SAMPLE_COLUMNS], masked


def _downsampled(samples: np.ndarray, length: np.ndarray, rr: np.ndarray) -> Block:
    starts = np.arange(0, BEAT_SAMPLES, DOWNSAMPLE_FACTOR)
    pooled = (np.add.reduceat(samples, starts, axis=1) / np.diff(np.append(starts, BEAT_SAMPLES))).astype(np.float32)
    return [f"ds{i:02d}" for i in range(len(starts))], pooled


def _length(samples: np.ndarray, length: np.ndarray, rr: np.ndarray) -> Block:
    return ["length"], length.astype(np.float32)[:, None]


def _rr(samples: np.ndarray, length: np.ndarray, rr: np.ndarray) -> Block:
    prev, nxt, local = rr[:, 0], rr[:, 1], rr[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):  # float32 arithmetic, as on the float32 table
        ratios = [prev / local, nxt / local, prev / nxt]
    names = [*RR_NAMES, "rr_prev_ratio", "rr_next_ratio", "rr_prev_next_ratio"]
    return names, _float32_no_inf([prev, nxt, local, *ratios])


def _rr_norm(samples: np.ndarray, length: np.ndarray, rr: np.ndarray) -> Block:
    prev, nxt, local = (rr[:, i].astype(np.float64) for i in range(3))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = {
            "rr_prev_minus_local": prev - local,
            "rr_next_minus_local": nxt - local,
            "rr_next_minus_prev": nxt - prev,
            "rr_pause_ratio": (prev + nxt) / (2 * local),
            "rr_prev_next_ratio_local": (nxt - prev) / local,
            "length_ms": length.astype(np.float64) * MS_PER_SAMPLE,
        }
        return list(out), _float32_no_inf(list(out.values()))


def _median_of_kept(samples: np.ndarray, n: np.ndarray) -> np.ndarray:
    """``np.nanmedian`` of the first ``n`` values of each row (no NaN among them), by its own arithmetic:
    below 600 values numpy takes the masked-array median, (low + high) / 2 of the sorted kept values,
    and that path costs more than the rest of the features of one beat."""
    kept = np.sort(np.where(np.arange(samples.shape[1])[None, :] < n[:, None], samples, np.inf), axis=1)
    half = n // 2
    low = np.take_along_axis(kept, np.where(n % 2 == 1, half, half - 1)[:, None], axis=1)[:, 0]
    high = np.take_along_axis(kept, half[:, None], axis=1)[:, 0]
    return (low + high) / 2.0


# numpy's nan-statistics along rows, with numpy's own arithmetic (zeros in place of NaN, the same sums and
# divisions in the same order) but not its Python layers, which cost more than the sums on one beat
def _nansum(a: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(a), 0.0, a).sum(axis=1)


def _nanmean(a: np.ndarray) -> np.ndarray:
    mask = np.isnan(a)
    return np.where(mask, 0.0, a).sum(axis=1) / np.sum(~mask, axis=1, dtype=np.intp)


def _nanstd(a: np.ndarray) -> np.ndarray:
    mask = np.isnan(a)
    arr = np.where(mask, 0.0, a)
    count = np.asarray(np.sum(~mask, axis=1, dtype=np.intp, keepdims=True))
    deviation = arr - arr.sum(axis=1, keepdims=True) / count
    deviation[mask] = 0.0
    return np.sqrt((deviation * deviation).sum(axis=1) / count[:, 0])


def _first_true(condition: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    found = condition.any(axis=1)
    return np.where(found, condition.argmax(axis=1), fallback)


def _morphology(samples32: np.ndarray, length: np.ndarray, rr: np.ndarray) -> Block:
    # the computation of ecgbeats.features.groups.morphology, line for line
    samples = samples32.astype(np.float64)
    n = _unpadded(length)
    positions = np.arange(BEAT_SAMPLES)[None, :]
    inside = positions < n[:, None]
    masked = np.where(inside, samples, np.nan)
    with np.errstate(all="ignore"):
        baseline = _median_of_kept(samples, n) if not np.isnan(samples).any() else np.nanmedian(masked, axis=1)
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
        near = (np.abs(centred[:, 1 : QRS_SEARCH * 2]) < 0.1) & (abs_diff[:, : QRS_SEARCH * 2 - 1] < 0.03)
        near &= positions[:, 1 : QRS_SEARCH * 2] >= s_idx[:, None]
        qrs_end = _first_true(near, np.full(len(n), QRS_SEARCH * 2 - 1)) + 1
        t_stop = np.maximum(T_START + 2, np.floor(n * T_STOP_FRACTION).astype(np.int64))
        t_mask = (positions >= T_START) & (positions < t_stop[:, None]) & inside
        t_region = np.where(t_mask, centred, np.nan)
        t_max = np.nanmax(t_region, axis=1)
        t_min = np.nanmin(t_region, axis=1)
        t_argmax = np.nanargmax(np.where(t_mask, centred, -np.inf), axis=1)
        energy = _nansum(centred_zero**2) / n
        qrs_energy = _nanmean(centred[:, :T_START] ** 2)
        out = {
            "baseline": baseline,
            "r_amp": r_amp,
            "s_depth": s_min,
            "s_time_ms": s_idx * MS_PER_SAMPLE,
            "r_halfwidth_ms": r_halfwidth * MS_PER_SAMPLE,
            "qrs_end_ms": qrs_end * MS_PER_SAMPLE,
            "qrs_area": _nansum(np.abs(centred[:, :T_START])),
            "t_max": t_max,
            "t_min": t_min,
            "t_mean": _nanmean(t_region),
            "t_std": _nanstd(t_region),
            "t_peak_ms": t_argmax * MS_PER_SAMPLE,
            "t_polarity": np.where(np.abs(t_max) >= np.abs(t_min), t_max, t_min),
            "energy": energy,
            "qrs_energy_ratio": qrs_energy / np.where(energy > 0, energy, np.nan),
            "r_downslope": np.nanmin(diff[:, : QRS_SEARCH // 2], axis=1),
            "qrs_max_upslope": np.nanmax(diff[:, :QRS_SEARCH], axis=1),
            "max_abs_slope": np.nanmax(abs_diff, axis=1),
            "line_length": _nansum(abs_diff) / n,
            "unpadded_mean": _nanmean(masked),
            "unpadded_std": _nanstd(masked),
            "tail_max": np.nanmax(np.where(positions >= (n * 0.6)[:, None], masked, np.nan), axis=1),
        }
        return list(out), _float32_no_inf([np.asarray(v, dtype=np.float64) for v in out.values()])


GROUPS: dict[str, Group] = {
    "samples": _samples,
    "samples_masked": _samples_masked,
    "downsampled": _downsampled,
    "length": _length,
    "rr": _rr,
    "rr_norm": _rr_norm,
    "morphology": _morphology,
}


class ArrayFeatures:
    """``build_features(beats, groups).reindex(columns=columns)`` as a float32 matrix, from arrays."""

    def __init__(self, groups: Sequence[str], columns: Sequence[str]) -> None:
        unknown = sorted(set(groups) - SUPPORTED_GROUPS)
        if unknown:
            raise ValueError(f"no array form for the feature groups {unknown}")
        self.groups = list(groups)
        self.columns = pd.Index(list(columns))  # one Index object: the drift monitor caches by it
        self._position = {name: i for i, name in enumerate(columns)}
        self._where: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # group: (its columns kept, their positions)

    def _placement(self, group: str, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        if group not in self._where:
            kept = [(j, self._position[name]) for j, name in enumerate(names) if name in self._position]
            self._where[group] = (
                np.array([j for j, _ in kept], dtype=np.intp),
                np.array([p for _, p in kept], dtype=np.intp),
            )
        return self._where[group]

    def __call__(self, samples: np.ndarray, length: np.ndarray, rr: np.ndarray) -> np.ndarray:
        out = np.full((len(samples), len(self.columns)), np.nan, dtype=np.float32)  # reindex: absent is NaN
        for group in self.groups:
            names, block = GROUPS[group](samples, length, rr)
            source, target = self._placement(group, names)
            out[:, target] = block[:, source]
        return out


def check_beats(n: int = CHECK_BEATS, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Beats for comparing the two feature paths: smooth random shapes and the corner cases (the
    shortest and longest lengths, a value of 0 or 1 everywhere, missing and zero RR intervals)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, BEAT_SAMPLES)
    shapes = np.exp(-((t[None, :] - rng.uniform(0, 0.6, (n, 1))) ** 2) / rng.uniform(0.001, 0.05, (n, 1)))
    shapes += rng.normal(0, 0.05, (n, BEAT_SAMPLES))
    length = rng.integers(0, 400, n).astype(np.int32)
    length[:6] = [0, 1, 2, 186, 187, 2000]
    shapes[np.arange(BEAT_SAMPLES)[None, :] >= length[:, None]] = 0
    lo, hi = shapes.min(axis=1, keepdims=True), shapes.max(axis=1, keepdims=True)
    samples = ((shapes - lo) / np.where(hi > lo, hi - lo, 1)).astype(np.float32)
    samples[6] = 1.0
    samples[7] = 0.0
    rr = rng.uniform(0.3, 2.0, (n, 3)).astype(np.float32)
    rr[rng.random((n, 3)) < 0.2] = np.nan
    rr[8] = [0.0, 0.0, 0.0]
    rr[9] = [1.0, 0.5, 0.0]
    return samples, length, rr


def array_features(groups: Sequence[str], columns: Sequence[str]) -> ArrayFeatures | None:
    """The array path for a bundle's feature groups, if it has one and it reproduces ``build_features``
    on :func:`check_beats` exactly; None otherwise (the caller uses ``build_features``)."""
    if set(groups) - SUPPORTED_GROUPS:
        return None
    fast = ArrayFeatures(groups, columns)
    samples, length, rr = check_beats()
    table = pd.DataFrame({"length": length})
    for i, name in enumerate(RR_NAMES):
        table[name] = rr[:, i]
    table = pd.concat([table, pd.DataFrame(samples, columns=SAMPLE_COLUMNS)], axis=1)
    with warnings.catch_warnings():  # the corner cases have empty slices: NaN features, as intended
        warnings.simplefilter("ignore", RuntimeWarning)
        reference = build_features(table, list(groups)).reindex(columns=list(columns)).to_numpy(dtype=np.float64)
        mine = fast(samples, length, rr).astype(np.float64)
    if not np.array_equal(reference, mine, equal_nan=True):
        same = (reference == mine) | (np.isnan(reference) & np.isnan(mine))
        differ = [str(columns[int(j)]) for j in np.flatnonzero(~same.all(axis=0))]
        log.warning(
            "the array features differ from build_features in %d column(s) (e.g. %s): scoring uses build_features",
            len(differ), ", ".join(differ[:5]),
        )  # fmt: skip
        return None
    return fast
