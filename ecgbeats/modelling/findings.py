"""From a classified recording to the findings of a Holter report: rate, pauses, ectopy, rhythm, HRV.

The input is one recording's beats in time order (R-peak time, AAMI class, and where the model gives
them the rhythm context and the ``rr_check`` doubt of ``ecgbeats.processing.detection``) and the
stretches that were not analysed. Every count follows the Holter and ANSI/AAMI EC57 conventions:

- **Consecutive beats.** Two beats are consecutive when no unanalysed stretch lies between them; an
  unanalysed stretch breaks every run, interval and episode.
- **Ectopic runs** (ventricular: V; supraventricular: S). A maximal sequence of consecutive beats of
  the class: one beat is *isolated*, two a *couplet*, three or more a *run* (EC57's "run": for V, a
  non-sustained ventricular tachycardia when it lasts under ``sustained_s``; for S, an SVT run). A
  run's rate is 60 times its intervals over their total length, in beats per minute.
- **Bigeminy / trigeminy** (ventricular). An episode of at least ``min_cycles`` consecutive cycles of
  one non-V beat then an isolated V beat (bigeminy), or two non-V beats then an isolated V beat
  (trigeminy); from the cycles' first beat to their last V beat.
- **Pauses.** An RR interval of at least ``pause_s`` between consecutive beats, with its start and
  length; one the detector doubts (``rr_check``: a possible missed beat, an unusable stretch) keeps its
  doubt, so a report can say it.
- **Heart rate.** Per ``window_s`` window of the recording (from its start): 60 over the mean RR of the
  intervals that end in the window, when they cover at least half of it. The recording's mean rate is
  its beats per analysed minute; its minimum and maximum are those of the windows, with their times.
- **Atrial fibrillation or flutter.** A maximal stretch of consecutive beats whose rhythm context is
  ``irregular_no_p`` (``ecgbeats.features.reference.rhythm_context``), from its first to its last beat,
  of at least ``min_af_s``; the burden is their total length over the analysed time. Only a model with
  the rhythm context gives it (``null`` otherwise).
- **Heart-rate variability**, time domain, of the N-N intervals: the intervals between two consecutive
  N beats that the detector does not doubt. SDNN, RMSSD and pNN50 as the Task Force of the ESC and
  NASPE (1996) defines them, a successive difference taken only between two adjacent N-N intervals
  and pNN50 counted over the N-N intervals. NeuroKit2's ``hrv_time``, given the intervals and their
  times, gives the same SDNN and RMSSD (``tests/unit/test_findings.py``); its pNN50 divides by a
  count that moves with the gaps (on 298 intervals in two stretches: 36.03 % against 35.91 %), so the
  three are computed here, in a few lines, and NeuroKit2 checks them.
- **Hourly**: for each hour from the recording's start, beats, rate (mean, minimum and maximum of its
  windows) and V and S beats.

:func:`recording_findings` gives them as one JSON-ready dict (:data:`SCHEMA`, described in
``reports/findings-schema.md``); :func:`episodes` and :func:`breaks_at` are the run finder and the
breaks it honours, which ``ecgbeats.modelling.ec57`` also uses to match the events to a reference;
:func:`heart_rate_windows` gives the rate per window, which the report page draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

SCHEMA = "ecgbeats.findings/1"
AF_CONTEXT = "irregular_no_p"


@dataclass(frozen=True)
class FindingsConfig:
    pause_s: float = 2.0  # an RR at least this long is a pause
    window_s: float = 60.0  # heart-rate windows
    min_cycles: int = 3  # bigeminy and trigeminy episodes: at least this many cycles
    sustained_s: float = 30.0  # a ventricular run this long is sustained VT, not NSVT
    min_af_s: float = 30.0  # an atrial fibrillation episode lasts at least this

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def episodes(flags: np.ndarray, breaks: np.ndarray) -> list[tuple[int, int]]:
    """Maximal stretches ``[first, last]`` (beat indices, inclusive) of consecutive beats with ``flags``;
    ``breaks[i]`` is True when beat ``i`` is not consecutive with beat ``i - 1``."""
    out: list[tuple[int, int]] = []
    start = -1
    for i, flag in enumerate(flags.tolist()):
        if flag and start >= 0 and breaks[i]:
            out.append((start, i - 1))
            start = i
        elif flag and start < 0:
            start = i
        elif not flag and start >= 0:
            out.append((start, i - 1))
            start = -1
    if start >= 0:
        out.append((start, len(flags) - 1))
    return out


def breaks_at(times: np.ndarray, unanalysed: Sequence[tuple[float, float]]) -> np.ndarray:
    """True at beat ``i`` when an unanalysed stretch lies between beat ``i - 1`` and beat ``i``."""
    out = np.zeros(len(times), dtype=bool)
    if len(times) == 0:
        return out
    out[0] = True
    for start, end in unanalysed:
        j = np.searchsorted(times, start, side="left")  # the first beat at or after the stretch's start
        if 0 < j < len(times) and times[j - 1] < end:
            out[j] = True
    return out


def _rate(times: np.ndarray) -> float:
    return round(float(60.0 * (len(times) - 1) / (times[-1] - times[0])), 1) if len(times) > 1 else 0.0


def _ectopy(classes: np.ndarray, times: np.ndarray, breaks: np.ndarray, name: str, config: FindingsConfig) -> dict:
    runs = episodes(classes == name, breaks)
    lengths = np.array([b - a + 1 for a, b in runs], dtype=int)
    long_runs = []
    for (a, b), n in zip(runs, lengths.tolist(), strict=True):
        if n >= 3:
            duration = float(times[b] - times[a])
            run = {"start_s": round(float(times[a]), 3), "beats": n, "duration_s": round(duration, 3),
                   "rate_bpm": _rate(times[a : b + 1])}  # fmt: skip
            if name == "V":
                run["sustained"] = duration >= config.sustained_s
            long_runs.append(run)
    couplets = [a for (a, _), n in zip(runs, lengths.tolist(), strict=True) if n == 2]
    return {
        "beats": int((classes == name).sum()),
        "isolated": int((lengths == 1).sum()),
        "couplets": len(couplets),
        "first_couplet_s": round(float(times[couplets[0]]), 3) if couplets else None,
        "runs": long_runs,
    }


def _geminy(classes: np.ndarray, times: np.ndarray, breaks: np.ndarray, period: int, min_cycles: int) -> list:
    """Episodes of ``period``-beat cycles ending in an isolated V beat (2: bigeminy, 3: trigeminy)."""
    is_v = classes == "V"
    n = len(classes)
    # beat i closes a cycle: it is V, the period - 1 beats before it are not, consecutive, and the beat
    # after it (if any, and consecutive) is not V
    closes = np.zeros(n, dtype=bool)
    for i in np.flatnonzero(is_v).tolist():
        first = i - period + 1
        if first < 0 or is_v[first:i].any() or breaks[first + 1 : i + 1].any():
            continue
        if i + 1 < n and is_v[i + 1] and not breaks[i + 1]:
            continue
        closes[i] = True
    out = []
    i = 0
    idx = np.flatnonzero(closes).tolist()
    while i < len(idx):
        j = i
        # the next cycle closes ``period`` beats later, with nothing broken between
        while j + 1 < len(idx) and idx[j + 1] - idx[j] == period and not breaks[idx[j] + 1 : idx[j + 1] + 1].any():
            j += 1
        cycles = j - i + 1
        if cycles >= min_cycles:
            first = idx[i] - period + 1
            out.append({"start_s": round(float(times[first]), 3), "end_s": round(float(times[idx[j]]), 3),
                        "cycles": cycles})  # fmt: skip
        i = j + 1
    return out


def heart_rate_windows(times: np.ndarray, breaks: np.ndarray, duration_s: float, window_s: float) -> pd.DataFrame:
    """Per window: the window's start, the intervals ending in it (count, total seconds) and the rate."""
    rr = np.diff(times)
    ok = ~breaks[1:]
    ends = times[1:][ok]
    window = np.floor(ends / window_s).astype(int)
    n_windows = max(int(np.ceil(duration_s / window_s)), 1)
    count = np.bincount(window, minlength=n_windows)[:n_windows]
    total = np.bincount(window, weights=rr[ok], minlength=n_windows)[:n_windows]
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(total >= window_s / 2, 60.0 * count / total, np.nan)
    return pd.DataFrame({"start_s": np.arange(n_windows) * window_s, "intervals": count, "seconds": total,
                         "rate_bpm": rate})  # fmt: skip


def _hrv(times: np.ndarray, classes: np.ndarray, breaks: np.ndarray, doubts: np.ndarray) -> dict | None:
    """SDNN, RMSSD (ms) and pNN50 (%) of the N-N intervals (see the module notes)."""
    nn = (classes[1:] == "N") & (classes[:-1] == "N") & ~breaks[1:] & (doubts[1:] == "")
    if nn.sum() < 3:
        return None
    intervals = 1000.0 * np.diff(times)
    adjacent = nn[1:] & nn[:-1]  # two N-N intervals in a row: a successive difference
    successive = np.diff(intervals)[adjacent]
    return {
        "nn_intervals": int(nn.sum()),
        "sdnn_ms": round(float(np.std(intervals[nn], ddof=1)), 2),
        "rmssd_ms": round(float(np.sqrt(np.mean(successive**2))), 2) if len(successive) else None,
        "pnn50_percent": round(float(100.0 * np.sum(np.abs(successive) > 50.0) / nn.sum()), 2),
    }


def recording_findings(
    beats: pd.DataFrame,
    duration_s: float,
    unanalysed: Sequence[tuple[float, float, str]] = (),
    config: FindingsConfig | None = None,
) -> dict[str, Any]:
    """The findings of one recording (see the module notes).

    ``beats``: ``time_s`` and ``class_name`` of every classified beat, in time order (two at the same
    time count once), and optionally ``rhythm`` and ``rr_check``; ``unanalysed``: the stretches (start s,
    end s, reason) not analysed.
    """
    config = config or FindingsConfig()
    missing = {"time_s", "class_name"} - set(beats.columns)
    if missing:
        raise ValueError(f"the beat table has no {', '.join(sorted(missing))} column")
    times = beats["time_s"].to_numpy(dtype=np.float64)
    if len(times) > 1 and (np.diff(times) < 0).any():
        raise ValueError("the beats are not in time order (time_s must not decrease)")
    if len(times) > 1 and (np.diff(times) == 0).any():  # two detections refined onto one R peak: one beat
        beats = beats[np.r_[True, np.diff(times) > 0]].reset_index(drop=True)
        times = beats["time_s"].to_numpy(dtype=np.float64)
    classes = beats["class_name"].astype(str).to_numpy()
    doubts = beats["rr_check"].astype(str).to_numpy() if "rr_check" in beats else np.full(len(times), "")
    stretches = sorted((float(a), float(b), str(why)) for a, b, why in unanalysed)
    unanalysed_s = float(sum(b - a for a, b, _ in stretches))
    analysed_s = max(duration_s - unanalysed_s, 0.0)
    breaks = breaks_at(times, [(a, b) for a, b, _ in stretches])

    windows = heart_rate_windows(times, breaks, duration_s, config.window_s)
    rated = windows.dropna(subset=["rate_bpm"])
    rr = np.diff(times)
    pauses = [
        {"start_s": round(float(times[i]), 3), "length_s": round(float(rr[i]), 3), "doubt": str(doubts[i + 1])}
        for i in np.flatnonzero((rr >= config.pause_s) & ~breaks[1:]).tolist()
    ]
    af: dict[str, Any] | None = None
    if "rhythm" in beats:
        spans = episodes((beats["rhythm"].astype(str) == AF_CONTEXT).to_numpy(), breaks)
        found = [(times[a], times[b]) for a, b in spans if times[b] - times[a] >= config.min_af_s]
        total = float(sum(b - a for a, b in found))
        af = {
            "episodes": [{"start_s": round(float(a), 3), "end_s": round(float(b), 3)} for a, b in found],
            "total_s": round(total, 3),
            "burden": round(total / analysed_s, 4) if analysed_s else 0.0,
        }
    hours = []
    for hour in range(max(int(np.ceil(duration_s / 3600.0)), 1)):
        here = (times >= 3600.0 * hour) & (times < 3600.0 * (hour + 1))
        rates = rated[(rated["start_s"] >= 3600.0 * hour) & (rated["start_s"] < 3600.0 * (hour + 1))]["rate_bpm"]
        hours.append({
            "hour": hour, "beats": int(here.sum()), "V": int((classes[here] == "V").sum()),
            "S": int((classes[here] == "S").sum()),
            "rate_mean_bpm": round(float(rates.mean()), 1) if len(rates) else None,
            "rate_min_bpm": round(float(rates.min()), 1) if len(rates) else None,
            "rate_max_bpm": round(float(rates.max()), 1) if len(rates) else None,
        })  # fmt: skip
    ventricular = _ectopy(classes, times, breaks, "V", config)
    ventricular["bigeminy"] = _geminy(classes, times, breaks, 2, config.min_cycles)
    ventricular["trigeminy"] = _geminy(classes, times, breaks, 3, config.min_cycles)
    slowest = rated.loc[rated["rate_bpm"].idxmin()] if len(rated) else None
    fastest = rated.loc[rated["rate_bpm"].idxmax()] if len(rated) else None
    return {
        "schema": SCHEMA,
        "config": config.to_dict(),
        "duration_s": round(float(duration_s), 3),
        "analysed_s": round(analysed_s, 3),
        "unanalysed": [{"start_s": round(a, 3), "end_s": round(b, 3), "reason": why} for a, b, why in stretches],
        "beats": {
            "total": len(times),
            "by_class": {str(c): int(n) for c, n in pd.Series(classes).value_counts().sort_index().items()},
        },
        "heart_rate": {
            "mean_bpm": round(60.0 * len(times) / analysed_s, 1) if analysed_s else None,
            "min_bpm": None if slowest is None else round(float(slowest["rate_bpm"]), 1),
            "min_at_s": None if slowest is None else float(slowest["start_s"]),
            "max_bpm": None if fastest is None else round(float(fastest["rate_bpm"]), 1),
            "max_at_s": None if fastest is None else float(fastest["start_s"]),
        },
        "pauses": pauses,
        "ventricular": ventricular,
        "supraventricular": _ectopy(classes, times, breaks, "S", config),
        "atrial_fibrillation": af,
        "hrv": _hrv(times, classes, breaks, doubts),
        "hourly": hours,
    }
