"""Long recordings (a 24-hour Holter) scored in segments of a fixed time grid, streamed in chunks.

A recording longer than one segment (``segment_s``, default 1800 s) is cut on a grid of segments
``[k * segment_s, (k + 1) * segment_s)`` counted from its first sample. Each segment goes through the
steps of :meth:`ecgbeats.serving.scoring.Scorer.strip_beats`, on a context wider than the segment:

1. **judged and detected** on ``[start - DETECT_PAD_S, stop + DETECT_PAD_S]``: the quality check
   (``ecgbeats.processing.quality.assess``; both the grid and the pad are whole 10-s quality windows, so
   every window lies on the recording's own 10-s grid) and the R-peak detector. The detector starts
   afresh in every context (its checks look back over the last 8 beats, which the pad holds); only
   the R peaks inside the segment are kept, and a peak closer than the detector's refractory period
   to the previous segment's last one is dropped. The spike-bridged signal of the segment is kept;
2. **measured** on ``[start - history, stop + AFTER_S]`` of that bridged signal with every kept R peak
   in it: the features of a record model look back ``history_seconds`` (the patient's rhythm) and need
   the next R peak and ``latency_seconds`` after a beat; the first lead is oriented on this context
   (``StripQuality.orient``); the beats whose detected R peak lies in the segment are kept.

What is guaranteed: the beats, their features, classes and probabilities depend only on the signal,
its rate and ``segment_s``, not on how the signal is read. :func:`segment_beats` takes the signal in
chunks of any size (one sample to the whole recording) and yields the same segments bit for bit;
:func:`strip_beats` (``segment_s`` given) on the whole signal in memory is this same
computation (``tests/api/test_batch_stream.py`` checks both on a fixture record). Memory is bounded
by the segment and its contexts (about ``history + 2 * segment_s`` seconds of signal, plus the beats
of one segment), not by the recording's length.

What is not: a segmented recording is not the one-piece detection of the whole signal
(``segment_s=None``, the service's strips): near a segment's edges GQRS's adaptive thresholds and
the detector's checks have had less signal to learn from. ``benchmarks/bench_holter.py`` measures how
often the two differ.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ecgbeats.processing.quality import Segment, StripQuality, UnusableSignal, assess
from ecgbeats.serving import scoring

log = logging.getLogger(__name__)

# the grid: 30 minutes. Each segment is measured with 310 s of history before it, so a shorter one
# repeats more of the measuring (300-s segments measure every sample about twice); memory grows with it
SEGMENT_S = 1800.0
DETECT_PAD_S = 10.0  # detector context either side: its checks look back 8 beats (a whole quality window)
AFTER_S = 10.0  # measuring context after a segment: the last beat's next R peak (an RR up to ~9 s) and latency
HISTORY_MARGIN_S = 10.0  # beyond the features' look-back: the first peaks of a context sit in filter edges
BEAT_HISTORY_S = 60.0  # beat-row bundles: the local rhythm of a few preceding beats
REFRACTORY_S = 0.2  # closer peaks are one beat seen by two segments (no two beats are this close)


@dataclass
class SegmentBeats:
    """One grid segment's share of the recording (samples are absolute, from the recording's start)."""

    start: int
    stop: int
    peaks: np.ndarray  # the R peaks detected in [start, stop)
    beats: pd.DataFrame  # as Scorer.strip_beats gives: r_peak, time_s, the features, unscored
    unusable: list[Segment]  # clipped to [start, stop)
    windows: int  # 10-s quality windows starting in [start, stop)
    spikes: int  # spike stretches starting in [start, stop)
    unusable_all: bool  # every quality window of the detection context is unusable
    inverted: bool  # the first lead was flipped in this segment's measuring context
    suspect: bool  # possibly inverted there: reported, not flipped
    qrs_ratio: float | None
    signal: np.ndarray | None = None  # the spike-bridged segment, when asked for (the whole-signal path)


class _Grid:
    def __init__(self, scorer: scoring.Scorer, fs: float, segment_s: float) -> None:
        config = scorer.quality_config
        self.window = max(1, round(config.window_s * fs))
        self.size = round(segment_s * fs)
        pad = round(DETECT_PAD_S * fs)
        if self.size < self.window or self.size % self.window or pad % self.window:
            raise ValueError(
                f"segment_s must be a whole number of {config.window_s:g}-s quality windows at {fs:g} Hz, "
                f"got {segment_s:g}"
            )
        self.pad = pad
        self.after = round(AFTER_S * fs)
        history = scorer.record_config.history_seconds if scorer.record_config is not None else BEAT_HISTORY_S
        self.history = round((history + HISTORY_MARGIN_S) * fs)
        self.refractory = round(REFRACTORY_S * fs)


def _window_bounds(n: int, size: int) -> list[tuple[int, int]]:
    """The quality windows of an n-sample strip, as ``assess`` lays them (a short tail joins the last)."""
    starts = list(range(0, n, size))
    if len(starts) > 1 and n - starts[-1] < size // 2:
        starts.pop()
    return [(s, starts[i + 1] if i + 1 < len(starts) else n) for i, s in enumerate(starts)]


def _clip(segments: Iterable[Segment], offset: int, start: int, stop: int) -> list[Segment]:
    """``segments`` shifted by ``offset`` and clipped to [start, stop); empty ones dropped."""
    out = []
    for seg in segments:
        a, b = max(start, seg.start + offset), min(stop, seg.end + offset)
        if a < b:
            out.append(Segment(a, b, seg.reason))
    return out


def segment_beats(
    scorer: scoring.Scorer,
    chunks: Iterable[np.ndarray],
    fs: float,
    segment_s: float = SEGMENT_S,
    *,
    keep_signal: bool = False,
) -> Iterator[SegmentBeats]:
    """The segments of a recording read as ``chunks`` ((samples,) or (samples, leads) arrays in mV, in
    order), in order; see the module notes for what is guaranteed.

    Raises ``ScoringError`` when the detector fails on a segment (its time is named).
    """
    grid = _Grid(scorer, fs, segment_s)
    size, pad = grid.size, grid.pad
    raw: np.ndarray | None = None  # the signal read and not yet detected on, from raw_start
    raw_start = 0
    bridged: np.ndarray | None = None  # the judged signal kept for measuring, from bridged_start
    bridged_start = 0
    peaks = np.zeros(0, dtype=np.int64)  # kept R peaks (absolute) still inside a measuring context
    unusable: list[Segment] = []
    pending: dict[int, dict[str, object]] = {}  # per detected segment, what measuring reports with it
    detected = 0  # segments detected
    measured = 0  # segments measured
    ended = False
    total = -1  # the recording's length, once the chunks end
    source = iter(chunks)
    while True:
        chunk = next(source, None)
        if chunk is None:
            ended = True
            total = raw_start + (0 if raw is None else len(raw))
        else:
            chunk = np.asarray(chunk, dtype=np.float64)
            raw = chunk if raw is None else np.concatenate([raw, chunk])
        available = raw_start + (0 if raw is None else len(raw))
        # 1. judge and detect every segment whose context has been read
        while raw is not None and (
            (not ended and (detected + 1) * size + pad <= available) or (ended and detected * size < total)
        ):
            start, stop = detected * size, min((detected + 1) * size, available)
            lo, hi = max(0, start - pad), min(stop + pad, available)
            context = raw[lo - raw_start : hi - raw_start]
            found, judged, info = _detect(scorer, context, fs, grid, lo, start, stop)
            found = found[(found >= start) & (found < stop)]
            if len(peaks) and len(found) and found[0] - peaks[-1] < grid.refractory:
                found = found[1:]
            peaks = np.concatenate([peaks, found])
            info["peaks"] = found
            unusable.extend(info["unusable"])  # type: ignore[arg-type]
            pending[detected] = info
            core = judged[start - lo : stop - lo]
            bridged = core.copy() if bridged is None else np.concatenate([bridged, core])
            detected += 1
            raw = raw[max(0, detected * size - pad) - raw_start :]
            raw_start = max(0, detected * size - pad)
        # 2. measure every detected segment whose measuring context has been detected
        done = detected * size if not ended else total
        while measured < detected and (ended and measured < detected or (measured + 1) * size + grid.after <= done):
            assert bridged is not None
            start, stop = measured * size, min((measured + 1) * size, done)
            lo, hi = max(0, start - grid.history), min(stop + grid.after, done)
            result = _measure(scorer, bridged[lo - bridged_start : hi - bridged_start], fs, lo, start, stop,
                              peaks, unusable)  # fmt: skip
            info = pending.pop(measured)
            signal = bridged[start - bridged_start : stop - bridged_start].copy() if keep_signal else None
            yield SegmentBeats(start=start, stop=stop, beats=result[0], inverted=result[1], suspect=result[2],
                               qrs_ratio=result[3], signal=signal, **info)  # type: ignore[arg-type]  # fmt: skip
            measured += 1
            keep_from = max(0, measured * size - grid.history)
            bridged = bridged[keep_from - bridged_start :]
            bridged_start = keep_from
            peaks = peaks[peaks >= keep_from]
            unusable = [seg for seg in unusable if seg.end > keep_from]
        if ended:
            return


def _detect(
    scorer: scoring.Scorer,
    context: np.ndarray,
    fs: float,
    grid: _Grid,
    lo: int,
    start: int,
    stop: int,
) -> tuple[np.ndarray, np.ndarray, dict[str, object]]:
    """R peaks (absolute) and the spike-bridged signal of one detection context, and its quality in the core."""
    config = scorer.quality_config
    n = len(context)
    windows = len([s for s, _ in _window_bounds(n, grid.window) if start <= s + lo < stop])
    try:
        quality = assess(context, fs, config)
    except UnusableSignal as err:  # nothing to detect here; the windows say why
        bounds = _window_bounds(n, grid.window)
        segments = [Segment(s, e, v) for (s, e), v in zip(bounds, err.verdicts, strict=True)]
        info: dict[str, object] = {
            "unusable": _clip(segments, lo, start, stop), "windows": windows, "spikes": 0,
            "unusable_all": True,
        }  # fmt: skip
        return np.zeros(0, dtype=np.int64), np.asarray(context, dtype=np.float64), info
    try:
        found = scoring.detect_r_peaks(quality.signal, fs) + lo
    except scoring.ScoringError as err:
        raise scoring.ScoringError("signal", f"at {start / fs:.0f}-{stop / fs:.0f} s: {err.message}") from err
    spikes = sum(1 for seg in quality.unusable if seg.reason == "spike" and start <= seg.start + lo < stop)
    info = {
        "unusable": _clip(quality.unusable, lo, start, stop), "windows": windows, "spikes": spikes,
        "unusable_all": False,
    }  # fmt: skip
    return found, quality.signal, info


def _measure(
    scorer: scoring.Scorer,
    context: np.ndarray,
    fs: float,
    lo: int,
    start: int,
    stop: int,
    peaks: np.ndarray,
    unusable: list[Segment],
) -> tuple[pd.DataFrame, bool, bool, float | None]:
    """The beats of [start, stop) measured on a context starting at ``lo``, with absolute r_peak/time_s."""
    here = peaks[(peaks >= lo) & (peaks < lo + len(context))] - lo
    quality = StripQuality(signal=context, fs=fs, windows=0, unusable=_clip(unusable, -lo, 0, len(context)))
    if len(here) < scoring.MIN_PEAKS:
        return _empty(scorer, context, fs), False, False, None
    quality.orient(here, scorer.quality_config)
    _, beats, _ = scorer.measure_beats(quality, here, fs)
    detected = here if scorer.record_config is not None else here[:-1]  # the detected peak of every row
    keep = (detected >= start - lo) & (detected < stop - lo)
    beats = beats[keep].reset_index(drop=True)
    beats["r_peak"] = beats["r_peak"].to_numpy(dtype=np.int64) + lo
    beats["time_s"] = beats["r_peak"].to_numpy() / fs
    return beats, quality.inverted, quality.suspect, quality.qrs_ratio


def _empty(scorer: scoring.Scorer, context: np.ndarray, fs: float) -> pd.DataFrame:
    """A beat table with no rows and the columns of a measured one."""
    n = len(context)
    probe = np.array([n // 3, 2 * n // 3]) if n >= 3 else np.array([0, max(0, n - 1)])
    if probe[0] >= probe[1]:
        return pd.DataFrame({"r_peak": pd.Series(dtype=np.int64), "time_s": pd.Series(dtype=np.float64)})
    quality = StripQuality(signal=context, fs=fs, windows=0)
    _, beats, _ = scorer.measure_beats(quality, probe, fs)
    return beats.iloc[0:0].reset_index(drop=True)


def segmented_strip_beats(
    scorer: scoring.Scorer, signal: np.ndarray, fs: float, segment_s: float
) -> tuple[np.ndarray, pd.DataFrame, StripQuality]:
    """``Scorer.strip_beats`` of a whole signal in memory, in segments: the streamed path in one chunk."""
    parts = list(segment_beats(scorer, [signal], fs, segment_s, keep_signal=True))
    if all(part.unusable_all for part in parts):
        reasons = pd.Series([seg.reason for part in parts for seg in part.unusable]).value_counts()
        described = ", ".join(f"{reason}" for reason in reasons.index)
        raise scoring.ScoringError("signal", f"no usable ECG in the strip: every segment is unusable ({described})")
    peaks = np.concatenate([part.peaks for part in parts])
    if len(peaks) < scoring.MIN_PEAKS:
        raise scoring.ScoringError(
            "signal", f"found {len(peaks)} R peak(s) in the strip; at least {scoring.MIN_PEAKS} are needed for a beat"
        )
    beats = pd.concat([part.beats for part in parts], ignore_index=True)
    ratios = [part.qrs_ratio for part in parts if part.qrs_ratio is not None]
    quality = StripQuality(
        signal=np.concatenate([part.signal for part in parts if part.signal is not None]),
        fs=fs,
        windows=sum(part.windows for part in parts),
        unusable=[seg for part in parts for seg in part.unusable],
        spikes=sum(part.spikes for part in parts),
        inverted=any(part.inverted for part in parts),
        suspect=any(part.suspect for part in parts) and not any(part.inverted for part in parts),
        qrs_ratio=float(np.median(ratios)) if ratios else None,
    )
    r_peaks = beats["r_peak"].to_numpy(dtype=np.int64) if scorer.record_config is not None else peaks
    return r_peaks, beats, quality


def strip_beats(
    scorer: scoring.Scorer, signal: np.ndarray, fs: float, segment_s: float | None
) -> tuple[np.ndarray, pd.DataFrame, StripQuality]:
    """``Scorer.strip_beats`` of a signal in memory; longer than ``segment_s`` seconds, in segments on the
    fixed grid (as the same recording streamed is); ``segment_s=None``: in one piece, as the service."""
    if segment_s is not None and len(signal) > round(segment_s * fs):
        return segmented_strip_beats(scorer, signal, fs, segment_s)
    return scorer.strip_beats(signal, fs)
