"""The baseline of an ECG lead: two median filters in a row (de Chazal 2004), exactly scipy's values.

``median_baseline(x, first, second)`` is ``median_filter(median_filter(x, first), second)`` with
``mode="nearest"``. A median is one of its window's values, so any exact running median gives the
same numbers; this one is faster on a digitised signal, whose samples take a few hundred levels on a
regular grid (ADC counts times a gain). The samples become level numbers, and each filter keeps a
count per level and walks the median from one window to the next: a few steps per sample for an ECG,
against scipy's heaps (about a third of a 30-minute record's scoring time, ``make bench-strip``).
A signal off such a grid (resampled, or with -0.0, NaN or inf) goes to scipy.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from scipy.ndimage import median_filter

MAX_GRID = 1 << 20  # grid steps between the lowest and highest sample: a 20-bit ADC's range


@njit(cache=True)
def _grid_levels(x: np.ndarray, levels: np.ndarray, step: float, steps: int) -> np.ndarray:  # pragma: no cover
    """Each sample's level number (the index of its value in ``levels``), found through the grid
    position ``round((x - levels[0]) / step)``; an empty array if two levels share a grid position or a
    sample is -0.0 (it equals 0.0, so its level would give back the other zero)."""
    table = np.full(steps + 1, -1, dtype=np.int64)
    for k in range(len(levels)):
        at = int(np.rint((levels[k] - levels[0]) / step))
        if table[at] >= 0:
            return np.empty(0, dtype=np.int64)
        table[at] = k
    out = np.empty(len(x), dtype=np.int64)
    for i in range(len(x)):
        if x[i] == 0.0 and np.signbit(x[i]):
            return np.empty(0, dtype=np.int64)
        out[i] = table[int(np.rint((x[i] - levels[0]) / step))]
    return out


@njit(cache=True)
def _running_median_levels(ranks: np.ndarray, size: int, n_levels: int) -> np.ndarray:  # pragma: no cover
    """The median level of each window ``ranks[i - size // 2 : i + size // 2 + 1]`` (ends repeated, as
    scipy's ``mode="nearest"``), ``size`` odd. ``below`` counts the window's values under level ``m``;
    the median is the level holding the window's middle value."""
    n = len(ranks)
    half = size // 2
    counts = np.zeros(n_levels, dtype=np.int64)
    for j in range(-half, half + 1):
        counts[ranks[min(max(j, 0), n - 1)]] += 1
    m = 0
    below = 0
    while below + counts[m] <= half:
        below += counts[m]
        m += 1
    out = np.empty(n, dtype=np.int64)
    out[0] = m
    for i in range(1, n):
        old = ranks[max(i - half - 1, 0)]
        new = ranks[min(i + half, n - 1)]
        if old != new:
            counts[old] -= 1
            if old < m:
                below -= 1
            counts[new] += 1
            if new < m:
                below += 1
            while below > half:
                m -= 1
                below -= counts[m]
            while below + counts[m] <= half:
                below += counts[m]
                m += 1
        out[i] = m
    return out


@njit(cache=True)
def _grid_table(
    x: np.ndarray, low: float, step: float, steps: int
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    """The distinct values of ``x`` in order and each sample's index into them, found through the grid
    position ``round((x - low) / step)`` without sorting; empty arrays if two different values share a
    position, one falls off the grid's ``steps``, or a sample is -0.0 (then the sorting path decides)."""
    table = np.full(steps + 1, np.nan)
    position = np.empty(len(x), dtype=np.int64)
    empty = (np.empty(0), np.empty(0, dtype=np.int64))
    for i in range(len(x)):
        value = x[i]
        if value == 0.0 and np.signbit(value):
            return empty
        at = int(np.rint((value - low) / step))
        if at < 0 or at > steps:
            return empty
        if np.isnan(table[at]):
            table[at] = value
        elif table[at] != value:
            return empty
        position[i] = at
    index = np.full(steps + 1, -1, dtype=np.int64)
    count = 0
    for at in range(steps + 1):
        if not np.isnan(table[at]):
            index[at] = count
            count += 1
    levels = np.empty(count)
    for at in range(steps + 1):
        if index[at] >= 0:
            levels[index[at]] = table[at]
    ranks = np.empty(len(x), dtype=np.int64)
    for i in range(len(x)):
        ranks[i] = index[position[i]]
    return levels, ranks


SAMPLE_FOR_STEP = 4096  # samples sorted to guess the grid step; the whole signal is checked against it


def _levels(x: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The distinct values of ``x`` and each sample's index into them, or None if ``x`` is off a grid.

    First without sorting the signal: the step guessed from a strided sample, every sample placed on that
    grid (a 30-minute record sorted took a third of its baseline's time); where the guess does not hold,
    from the sorted signal."""
    low, high = float(x.min()), float(x.max())
    if np.isfinite(low) and np.isfinite(high) and high > low:
        sample = np.unique(x[:: max(1, len(x) // SAMPLE_FOR_STEP)])
        if len(sample) > 1:
            step = float(np.diff(sample).min())
            steps = (high - low) / step
            if steps <= MAX_GRID:
                levels, ranks = _grid_table(x, low, step, int(np.rint(steps)))
                if len(levels):
                    return levels, ranks
    ordered = np.sort(x)
    if not (np.isfinite(ordered[0]) and np.isfinite(ordered[-1])):  # NaN sorts last
        return None
    distinct = np.empty(len(ordered), dtype=bool)
    distinct[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=distinct[1:])
    levels = ordered[distinct]
    if len(levels) == 1:
        return levels, np.zeros(len(x), dtype=np.int64)
    step = float(np.diff(levels).min())
    steps = (levels[-1] - levels[0]) / step
    if not steps <= MAX_GRID:
        return None
    ranks = _grid_levels(x, levels, step, int(np.rint(steps)))
    return (levels, ranks) if len(ranks) else None


def median_baseline(x: np.ndarray, first: int, second: int) -> np.ndarray:
    """``median_filter(median_filter(x, size=first, mode="nearest"), size=second, mode="nearest")`` of
    a 1-D signal, ``first`` and ``second`` odd: the same values, bit for bit."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    found = _levels(x) if len(x) and first % 2 and second % 2 else None
    if found is None:
        return median_filter(median_filter(x, size=first, mode="nearest"), size=second, mode="nearest")
    levels, ranks = found
    medians = _running_median_levels(ranks, first, len(levels))
    return levels[_running_median_levels(medians, second, len(levels))]
