"""Cut single heartbeats out of an ECG signal in the Kaggle format, and measure RR intervals.

This is the one segmentation used everywhere: by ``ingest`` on the annotated MIT-BIH records and
by the service on peaks found in a raw strip, so training and serving see identical beats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import resample_poly

BEAT_FS = 125  # Hz, the Kaggle beats' sampling rate
BEAT_SAMPLES = 187  # samples per beat row (1.496 s at 125 Hz)
WINDOW_FACTOR = 1.2  # a beat spans 1.2 times the interval to the next R peak (Kachuee et al. 2018)


@dataclass(frozen=True)
class Beats:
    """Beats cut at R peaks ``peaks[:-1]``: the last peak has no successor to bound its window."""

    samples: np.ndarray  # (n, BEAT_SAMPLES) float32 in [0, 1], zero-padded after ``lengths``
    lengths: np.ndarray  # (n,) int, samples before the zero padding


def to_beat_rate(signal: np.ndarray, fs: float) -> np.ndarray:
    """Resample a 1-D signal to BEAT_FS with a polyphase anti-aliasing filter."""
    signal = np.asarray(signal, dtype=np.float64)
    if fs == BEAT_FS:
        return signal
    up, down = _ratio(fs)
    return resample_poly(signal, up, down)


def _ratio(fs: float) -> tuple[int, int]:
    from fractions import Fraction

    frac = Fraction(BEAT_FS) / Fraction(fs).limit_denominator(1000)
    return frac.numerator, frac.denominator


def minmax_scale(segment: np.ndarray) -> np.ndarray:
    """Scale to [0, 1]; a flat segment becomes all zeros instead of dividing by zero."""
    low, high = float(segment.min()), float(segment.max())
    if high == low:
        return np.zeros_like(segment, dtype=np.float64)
    return (segment - low) / (high - low)


def cut_beats(signal: np.ndarray, fs: float, peaks: np.ndarray) -> Beats:
    """Cut one Kaggle-format beat per R peak except the last.

    Each beat starts at its R peak and spans ``WINDOW_FACTOR`` times the interval to the next
    peak, is min-max scaled within itself, and is cut or zero-padded to ``BEAT_SAMPLES``.
    """
    peaks = np.asarray(peaks, dtype=np.int64)
    if peaks.ndim != 1 or np.any(np.diff(peaks) <= 0):
        raise ValueError("R peaks must be a strictly increasing 1-D array of sample indices")
    resampled = to_beat_rate(signal, fs)
    scale = BEAT_FS / fs
    starts = np.round(peaks[:-1] * scale).astype(np.int64)
    spans = np.round(WINDOW_FACTOR * np.diff(peaks) * scale).astype(np.int64)
    n = len(starts)
    samples = np.zeros((n, BEAT_SAMPLES), dtype=np.float32)
    lengths = np.zeros(n, dtype=np.int64)
    for i in range(n):
        stop = min(starts[i] + max(spans[i], 1), len(resampled), starts[i] + BEAT_SAMPLES)
        segment = resampled[starts[i] : stop]
        lengths[i] = len(segment)
        samples[i, : len(segment)] = minmax_scale(segment)
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
