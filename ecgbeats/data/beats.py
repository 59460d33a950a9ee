"""Cut single heartbeats out of an ECG signal exactly as the published Kaggle beats were cut.

This is the one segmentation used everywhere: by ``ingest`` on the annotated MIT-BIH records and
by the service on R peaks detected in a raw strip, so training and serving see identical beats.

The published procedure, recovered from the raw records (it matches all 520 published reference
rows bit for bit): a beat starts at its R peak and runs to the next annotation after it, plus the
first fifth (rounded down) of the interval from that annotation to the one after it; on the MIT-BIH
records "annotation" means every entry of the ``.atr`` file, of any type (rhythm changes ``+``,
signal quality ``~``, artefacts ``|``, comments ``"``, non-conducted P waves ``x``, VF onset ``[``
...), not only beats. On a strip with no annotations, and by default, the R peaks are the only
bounds (``ingest.beat_end``: ``next_beat``; ``next_annotation`` is the published rule). Every third sample
of the 360 Hz signal is kept (so the rows are at 120 Hz, not the 125 Hz usually quoted); the kept
samples are min-max scaled to [0, 1]; the row is zero-padded, or cut, to 187 samples. The last
beat of a recording has no following interval and yields no row.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly

SOURCE_FS = 360  # Hz, MIT-BIH's sampling rate, which the beat procedure is defined at
DECIMATION = 3  # every third source sample is kept
BEAT_FS = SOURCE_FS / DECIMATION  # 120 Hz: the beat rows' true sampling rate
BEAT_SAMPLES = 187  # samples per beat row
TAIL_DIVISOR = 5  # a beat extends into the following RR interval by a fifth of it


@dataclass(frozen=True)
class Beats:
    """Beats cut at R peaks ``peaks[:-1]`` (the last peak bounds the one before it)."""

    samples: np.ndarray  # (n, BEAT_SAMPLES) float32 in [0, 1], zero-padded after ``lengths``
    lengths: np.ndarray  # (n,) int, samples in the beat before padding or cutting (may exceed 187)


def minmax_scale(segment: np.ndarray) -> np.ndarray:
    """Scale to [0, 1]; a flat segment becomes all zeros instead of dividing by zero."""
    segment = np.asarray(segment, dtype=np.float64)
    low, high = segment.min(), segment.max()
    if high == low:
        return np.zeros_like(segment)
    return (segment - low) / (high - low)


def resample(signal: np.ndarray, fs: float, rate: float) -> np.ndarray:
    """A signal at ``fs`` resampled to ``rate`` (``scipy.signal.resample_poly``: anti-aliased), along its
    first axis; as it is when the rates are equal."""
    if rate == fs:
        return np.asarray(signal)
    ratio = Fraction(rate).limit_denominator(10_000) / Fraction(fs).limit_denominator(10_000)
    return resample_poly(np.asarray(signal, dtype=np.float64), ratio.numerator, ratio.denominator)


def to_source_rate(signal: np.ndarray, fs: float, peaks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Resample a signal (and move its peaks) to SOURCE_FS, where the beat procedure is defined."""
    signal = np.asarray(signal)
    if fs == SOURCE_FS:
        return signal, np.asarray(peaks, dtype=np.int64)
    resampled = resample(signal, fs, SOURCE_FS)
    moved = np.round(np.asarray(peaks, dtype=np.float64) * SOURCE_FS / fs).astype(np.int64)
    return resampled, np.clip(moved, 0, len(resampled) - 1)


def beat_bounds(
    peaks: np.ndarray, signal_length: int, bounds: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(start, stop) sample of each beat but the last, at SOURCE_FS.

    A beat runs to the first of ``bounds`` (default: the peaks themselves) after its peak, plus a
    fifth (rounded down) of the interval from that bound to the next one; after the last bound,
    the following stretch runs to the end of the signal.
    """
    bounds = np.append(peaks if bounds is None else bounds, signal_length)
    following = np.searchsorted(bounds, peaks[:-1], side="right")
    after = bounds[np.minimum(following + 1, len(bounds) - 1)]
    return peaks[:-1], bounds[following] + (after - bounds[following]) // TAIL_DIVISOR


def cut_beats(signal: np.ndarray, fs: float, peaks: np.ndarray, bounds: np.ndarray | None = None) -> Beats:
    """One Kaggle-format beat per R peak except the last (see the module docstring).

    ``bounds`` are the samples of all annotations (beats and non-beats) that end a beat; by
    default the R peaks alone.
    """
    peaks = np.asarray(peaks, dtype=np.int64)
    if peaks.ndim != 1 or len(peaks) < 1:
        raise ValueError("R peaks must be a non-empty 1-D array of sample indices")
    if np.any(np.diff(peaks) <= 0):
        raise ValueError("R peaks must be strictly increasing")
    if peaks[0] < 0 or peaks[-1] >= len(signal):
        raise ValueError(f"R peaks must lie inside the signal (0..{len(signal) - 1})")
    bounds = peaks if bounds is None else np.asarray(bounds, dtype=np.int64)
    if bounds.ndim != 1 or np.any(np.diff(bounds) < 0) or bounds[0] < 0 or bounds[-1] >= len(signal):
        raise ValueError("beat bounds must be sorted sample indices inside the signal")
    signal, moved = to_source_rate(signal, fs, np.concatenate([peaks, bounds]))
    peaks, bounds = moved[: len(peaks)], moved[len(peaks) :]
    starts, stops = beat_bounds(peaks, len(signal), bounds)
    samples = np.zeros((len(starts), BEAT_SAMPLES), dtype=np.float32)
    lengths = np.zeros(len(starts), dtype=np.int64)
    for i, (start, stop) in enumerate(zip(starts, stops, strict=True)):
        # scaled over the whole beat, then cut: a beat longer than a row keeps its own scale
        segment = minmax_scale(signal[start:stop:DECIMATION])
        lengths[i] = len(segment)
        kept = min(len(segment), BEAT_SAMPLES)
        samples[i, :kept] = segment[:kept]
    return Beats(samples=samples, lengths=lengths)


def rr_intervals(peaks: np.ndarray, fs: float, local_beats: int = 10) -> dict[str, np.ndarray]:
    """RR intervals in seconds for every peak: previous, next, and the local average.

    The local average is the mean of the intervals within ``local_beats`` beats on either side,
    the patient's own recent rhythm that a premature beat is measured against. The first peak
    has no previous interval and the last no next one (NaN).
    """
    peaks = np.asarray(peaks, dtype=np.float64)
    rr = np.diff(peaks) / fs
    prev = np.concatenate([[np.nan], rr])
    nxt = np.concatenate([rr, [np.nan]])
    local = np.full(len(peaks), np.nan)
    if len(rr):
        cumulative = np.concatenate([[0.0], np.cumsum(rr)])
        index = np.arange(len(peaks))
        lo = np.clip(index - local_beats, 0, len(rr))
        hi = np.clip(index + local_beats, 0, len(rr))
        counts = hi - lo
        with np.errstate(invalid="ignore", divide="ignore"):
            local = np.where(counts > 0, (cumulative[hi] - cumulative[lo]) / counts, np.nan)
    return {"rr_prev": prev, "rr_next": nxt, "rr_local": local}
