"""R peaks of an ECG strip: GQRS's candidates, checked against the beats before them and the second lead.

1. **Candidates**: GQRS (``ecgbeats.processing.gqrs``, wfdb's detector compiled) on the first lead, at the
   strip's own rate. It misses few beats, and few ectopic ones (41 V beats of 7,130 over the 48 MIT-BIH
   records at 360 Hz, against 577 for XQRS), but takes some tall T waves and noise for beats.
2. **A check of each candidate** against the last ``HISTORY`` accepted beats, in time order. Its QRS
   slope is the largest ``|d/dt|`` of the lead band-passed to 5-25 Hz within ``SLOPE_WINDOW_S`` of it. A
   candidate is rejected when it is small (slope under ``MIN_SLOPE`` of the median slope), or both early
   (RR under ``EARLY_RR`` of the median RR) and smallish (slope under ``EARLY_SLOPE``): a T wave or a
   wander, as Pan and Tompkins' T-wave test. A candidate that the second lead's GQRS also finds (within
   ``CONFIRM_S``) is kept whatever its slope: a real beat can be small in one lead. With one lead,
   nothing is confirmed, so only a candidate under ``SINGLE_MIN_SLOPE`` is rejected: the early rule
   alone would drop PVCs that are small in the lead (385 V beats of the 48 records, against 43).
3. **A search back in the second lead**: a beat the second lead's GQRS finds, at least
   ``MIN_SEPARATION_S`` from every accepted beat, inside an RR interval longer than ``SEARCH_BACK_RR``
   times the median RR, with a slope in the second lead of at least ``SEARCH_BACK_SLOPE`` of its slope at
   the accepted beats, is added: a beat lost in the first lead (a PVC of another axis, a noisy stretch).

Steps 2 and 3 use the second lead only when it agrees with the first (at least half of the second
lead's beats lie near a first-lead beat), so a disconnected or noisy second lead changes nothing. A
beat is decided by the beats before it and, in step 3, the beat after it: the look-ahead is one RR
interval. Why this detector, with every candidate's misses by class: ``reports/deployment.md``, "QRS
detectors compared", from ``make bench-detectors`` and the ``detection`` stage.

:func:`rr_checks` says where a detected RR interval is doubtful, so that a reader does not take a
missed beat for a pause.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np
from numba import njit
from scipy.signal import butter, sosfiltfilt

from ecgbeats.processing.gqrs import DetectionError, gqrs_peaks

__all__ = ["DetectionError", "detect_r_peaks", "rr_checks", "RR_CHECKS"]

SLOPE_BAND_HZ = (5.0, 25.0)
SLOPE_WINDOW_S = 0.06
HISTORY = 8  # accepted beats the medians look back over
MIN_SLOPE = 0.3
SINGLE_MIN_SLOPE = 0.2
EARLY_RR = 0.6
EARLY_SLOPE = 0.6
CONFIRM_S = 0.10
SEARCH_BACK_RR = 1.5
SEARCH_BACK_SLOPE = 0.5
SEARCH_BACK_FIRST_SLOPE = 0.2
SILENT = 0.1
MIN_SEPARATION_S = 0.25
SETTLE_S = 0.5  # a stretch filtered on its own is padded this much either side (the band-pass settles)
AGREEMENT = 0.5  # share of the second lead's beats near a first-lead beat for it to be used
# a detected RR this many times the median RR is doubtful when QRS-like activity lies in it: a slope of
# DOUBT_SLOPE of the beats' after the T wave of the beat before and before the P wave of the beat after
DOUBTFUL_RR = 1.8
DOUBT_SLOPE = 0.2
DOUBT_AFTER_S = 0.45
DOUBT_BEFORE_S = 0.2
RR_CHECKS = ("", "possible_missed_beat", "unusable_signal")


@cache
def _slope_filter(fs: float) -> np.ndarray:
    return butter(2, SLOPE_BAND_HZ, btype="band", fs=fs, output="sos")


def slope(lead: np.ndarray, fs: float) -> np.ndarray:
    """``|d/dt|`` (mV per sample) of the lead band-passed to the QRS band, zero phase."""
    filtered = sosfiltfilt(_slope_filter(fs), lead)
    return np.abs(np.diff(filtered, prepend=filtered[:1]))


def peak_slopes(slopes: np.ndarray, peaks: np.ndarray, fs: float) -> np.ndarray:
    """The largest slope within ``SLOPE_WINDOW_S`` of each peak."""
    if len(peaks) == 0:
        return np.zeros(0)
    half = max(1, round(SLOPE_WINDOW_S * fs))
    index = np.clip(peaks[:, None] + np.arange(-half, half + 1)[None, :], 0, len(slopes) - 1)
    return slopes[index].max(axis=1)


def near(points: np.ndarray, others: np.ndarray, tolerance: float) -> np.ndarray:
    """For each of ``points``: is one of the sorted ``others`` within ``tolerance`` samples of it?"""
    if len(others) == 0:
        return np.zeros(len(points), dtype=bool)
    j = np.searchsorted(others, points)
    before = others[np.clip(j - 1, 0, len(others) - 1)]
    after = others[np.clip(j, 0, len(others) - 1)]
    return np.minimum(np.abs(points - before), np.abs(after - points)) <= tolerance


@njit(cache=True)
def _check(  # pragma: no cover (compiled)
    peaks: np.ndarray, slopes: np.ndarray, confirmed: np.ndarray, history: int,
    min_slope: float, early_rr: float, early_slope: float,
) -> np.ndarray:  # fmt: skip
    """Step 2 of the module notes: which candidates are accepted, in time order."""
    n = len(peaks)
    keep = np.zeros(n, dtype=np.bool_)
    recent_slopes = np.empty(history)
    recent_rr = np.empty(history)
    n_slopes = 0
    n_rr = 0
    last = -1
    for k in range(n):
        accept = True
        if n_slopes > 0 and not confirmed[k]:
            median_slope = np.median(recent_slopes[: min(n_slopes, history)])
            early = False
            if n_rr > 0:
                early = peaks[k] - last < early_rr * np.median(recent_rr[: min(n_rr, history)])
            if slopes[k] < min_slope * median_slope or (early and slopes[k] < early_slope * median_slope):
                accept = False
        if accept:
            keep[k] = True
            if last >= 0:
                recent_rr[n_rr % history] = peaks[k] - last
                n_rr += 1
            recent_slopes[n_slopes % history] = slopes[k]
            n_slopes += 1
            last = peaks[k]
    return keep


@njit(cache=True)
def _long_intervals(peaks: np.ndarray, history: int, factor: float) -> np.ndarray:  # pragma: no cover (compiled)
    """For each interval ``k`` (``peaks[k]`` to ``peaks[k + 1]``), from the fourth on: is it longer than
    ``factor`` times the median of the ``history`` intervals before it?"""
    rr = np.diff(peaks).astype(np.float64)
    out = np.zeros(len(rr), dtype=np.bool_)
    for k in range(3, len(rr)):
        out[k] = rr[k] > factor * np.median(rr[max(k - history, 0) : k])
    return out


def _found_in_second(leads: list[np.ndarray], fs: float, kept: np.ndarray, j: int, candidate: int) -> bool:
    """Step 3's test of a second-lead beat in the long interval ``kept[j - 1]`` to ``kept[j]``: its slope
    in the second lead against the beats before it there, and in the first lead some evidence of it, or
    none of anything (the first lead lost). Only this stretch is filtered: such intervals are rare."""
    pad = round(SETTLE_S * fs)
    recent = kept[max(j - HISTORY, 0) : j]
    lo, hi = max(int(recent[0]) - pad, 0), min(int(kept[j]) + pad, len(leads[0]))
    first, second = slope(leads[0][lo:hi], fs), slope(leads[1][lo:hi], fs)
    at = np.array([candidate - lo])
    if peak_slopes(second, at, fs)[0] < SEARCH_BACK_SLOPE * np.median(peak_slopes(second, recent - lo, fs)):
        return False
    level = float(np.median(peak_slopes(first, recent - lo, fs)))
    if peak_slopes(first, at, fs)[0] >= SEARCH_BACK_FIRST_SLOPE * level:
        return True
    margin = round(MIN_SEPARATION_S * fs)
    gap = first[int(kept[j - 1]) + margin - lo : int(kept[j]) - margin - lo]
    return len(gap) > 0 and gap.max() < SILENT * level


def detect_r_peaks(signal: np.ndarray, fs: float) -> np.ndarray:
    """The R peaks of a strip ((samples,) or (samples, leads), mV), sorted and unique; see the module notes.

    Raises :class:`DetectionError` when GQRS cannot run on the strip (a rate below its filters', a
    non-finite sample).
    """
    signal = np.asarray(signal, dtype=np.float64)
    leads = [signal] if signal.ndim == 1 else [signal[:, j] for j in range(min(2, signal.shape[1]))]
    candidates = gqrs_peaks(leads[0], fs)
    others = gqrs_peaks(leads[1], fs) if len(leads) > 1 else np.zeros(0, dtype=np.int64)
    if len(others) and near(others, candidates, CONFIRM_S * fs).mean() < AGREEMENT:
        others = np.zeros(0, dtype=np.int64)  # the second lead does not see the same heart: not used
    if len(candidates) == 0:
        return candidates
    first_slopes = peak_slopes(slope(leads[0], fs), candidates, fs)
    if len(others) == 0:
        alone = np.zeros(len(candidates), dtype=bool)
        return candidates[_check(candidates, first_slopes, alone, HISTORY, SINGLE_MIN_SLOPE, 0.0, 0.0)]
    confirmed = near(candidates, others, CONFIRM_S * fs)
    kept = candidates[_check(candidates, first_slopes, confirmed, HISTORY, MIN_SLOPE, EARLY_RR, EARLY_SLOPE)]
    away = others[~near(others, kept, MIN_SEPARATION_S * fs)]
    j = np.searchsorted(kept, away)
    inside = np.flatnonzero((j >= 1) & (j < len(kept)))
    long = _long_intervals(kept, HISTORY, SEARCH_BACK_RR)
    add = [m for m in inside[long[j[inside] - 1]] if _found_in_second(leads, fs, kept, int(j[m]), int(away[m]))]
    return np.union1d(kept, away[add])


def rr_checks(lead: np.ndarray, fs: float, peaks: np.ndarray, unusable: Sequence[tuple[int, int]] = ()) -> np.ndarray:
    """For each peak, a doubt about the RR interval that ends at it (:data:`RR_CHECKS`; "" for none).

    An interval longer than ``DOUBTFUL_RR`` times the median of the ``HISTORY`` intervals before it is
    ``unusable_signal`` when it overlaps an unusable stretch (``unusable``: (start, end) samples), and
    ``possible_missed_beat`` when the lead's QRS-band slope somewhere in it, from ``DOUBT_AFTER_S`` after
    its first beat (past the T wave) to ``DOUBT_BEFORE_S`` before its last, reaches ``DOUBT_SLOPE`` of
    the median slope at the beats before it: something QRS-like that was not taken for a beat. An
    interval with neither looks like a real pause and is not flagged. The first intervals, before
    three are known, are not judged. Only the stretch around a long interval is filtered, so the check
    costs nothing on a regular rhythm.

    On the 48 MIT-BIH records at 360 Hz (both leads detected, the first judged: a scratch run over the
    998 intervals longer than 1.8 times the running RR), 11 of the 16 that hide a reference beat were
    flagged, and 29 of the 982 that hide none (compensatory pauses, atrial fibrillation, sinus pauses).
    """
    peaks = np.asarray(peaks, dtype=np.int64)
    out = np.full(len(peaks), "", dtype=object)
    if len(peaks) < 5:
        return out
    lead = np.asarray(lead, dtype=np.float64)
    after, before = round(DOUBT_AFTER_S * fs), round(DOUBT_BEFORE_S * fs)
    pad = round(SETTLE_S * fs)
    for k in np.flatnonzero(_long_intervals(peaks, HISTORY, DOUBTFUL_RR)).tolist():
        start, stop = int(peaks[k]), int(peaks[k + 1])
        if any(a < stop and b > start for a, b in unusable):
            out[k + 1] = "unusable_signal"
            continue
        if stop - start <= after + before:
            continue
        lo = max(int(peaks[max(k - HISTORY, 0)]) - pad, 0)
        hi = min(stop + pad, len(lead))
        slopes = slope(lead[lo:hi], fs)
        level = np.median(peak_slopes(slopes, peaks[max(k - HISTORY, 0) : k + 1] - lo, fs))
        if slopes[start + after - lo : stop - before - lo].max() >= DOUBT_SLOPE * level:
            out[k + 1] = "possible_missed_beat"
    return out
