"""Beats read from the raw record, relative to the patient: the interpatient model's representation.

The Kaggle beat rows (``ecgbeats.data.beats``) start at the R peak and are min-max scaled, so they hold
neither the P wave nor the amplitude, and their rhythm is the ten neighbouring beats. A beat here is
measured on the record itself, baseline removed and in millivolts, in both leads:

- ``window``: the signal from ``pre_s`` before the R peak (the P wave) to ``post_s`` after it (the T
  wave), every ``window_step``-th sample at 360 Hz;
- ``morphology``: R amplitude, QRS extremes, width and energy, P- and T-wave region measures;
- ``rhythm``: RR intervals before and after, against the median of the ``recent_beats`` preceding ones,
  and how irregular those are;
- ``patient_rhythm``: the same intervals against the patient's own median RR over the preceding
  ``patient_window_s`` seconds;
- ``template``: against the patient's dominant beat, the element-wise median of the ``template_beats``
  preceding beats: correlation (whole window and QRS), RMS distance, and the ratios of QRS
  amplitude, width and energy to their running medians.

Everything a beat's features use lies in [R - history, R + latency]: the patient context looks only
backwards (``history_seconds``), and the beat is complete once the next R peak and ``post_s`` after its
own R are there (``latency_seconds``, plus the next RR interval). The baseline filter and the
zero-phase low-pass reach a few hundred milliseconds either way of every sample.

One function, :func:`record_features`, computes them for a whole record or strip: at training time
on the annotated R peaks, in the service and the batch CLI on detected ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numba import njit
from scipy.signal import butter, sosfiltfilt
from tqdm import tqdm

from ecgbeats.data.aami import BEAT_SYMBOLS, SYMBOL_TO_LABEL
from ecgbeats.data.beats import SOURCE_FS, to_source_rate
from ecgbeats.data.dataset import read_record_signals
from ecgbeats.features.reference import ReferenceConfig, reference_features
from ecgbeats.processing.baseline import median_baseline

LEAD_NAMES = ("a", "b")  # the record's first and second signal (MIT-BIH: MLII and V1, V2, V4 or V5)
RECORD_GROUPS: dict[str, str] = {
    "window": "the signal from the P wave to the T wave, baseline removed, mV, every window_step-th 360 Hz sample",
    "morphology": "R amplitude, QRS extremes, width and energy, P- and T-wave region measures (mV, ms)",
    "rhythm": "RR intervals before and after, and their ratios to the mean of the preceding beats",
    "patient_rhythm": "RR intervals against the patient's mean RR over the preceding minutes",
    "template": "correlation, distance and QRS ratios against the patient's running dominant beat",
    "rhythm_refs": "RR intervals against several references: means, an upper percentile, the interval before",
    "reference": "the beat against the recording's sinus reference cluster (RR, QRS, P wave) and the rhythm context",
}
META_COLUMNS = ("record", "r_peak", "r_refined", "symbol", "label", "lead_a", "lead_b")  # not model inputs


@dataclass(frozen=True)
class RecordBeatConfig:
    """How a beat is measured on the raw record: the contract the bundle carries to the service."""

    groups: tuple[str, ...] = ("window", "morphology", "rhythm", "patient_rhythm", "template")
    leads: int = 2  # 1: the first signal only; 2: the second too
    pre_s: float = 0.25  # window start before R: holds the P wave
    post_s: float = 0.45  # window end after R: holds the T wave
    window_step: int = 6  # keep every 6th sample of the 360 Hz window (60 Hz, after the 40 Hz low-pass)
    baseline_s: tuple[float, float] = (0.2, 0.6)  # median filters estimating the baseline (de Chazal 2004)
    lowpass_hz: float = 40.0  # zero-phase low-pass: muscle noise and mains above
    refine_s: float = 0.05  # the R peak moves to the largest |signal| within this of the given one
    recent_beats: int = 10  # the local rhythm: median of this many preceding RR intervals
    patient_window_s: float = 300.0  # the patient's rhythm: median RR over this many preceding seconds
    template_beats: int = 30  # the dominant beat: median of this many preceding beats
    reference: ReferenceConfig = ReferenceConfig()  # the sinus reference cluster (ecgbeats.features.reference)
    fs: int = field(default=SOURCE_FS, init=False)  # the rate every signal is resampled to first

    def __post_init__(self) -> None:
        unknown = [g for g in self.groups if g not in RECORD_GROUPS]
        if unknown:
            raise ValueError(f"unknown record feature groups {unknown}; known: {list(RECORD_GROUPS)}")
        if not self.groups:
            raise ValueError("no record feature group selected")
        if self.leads not in (1, 2):
            raise ValueError(f"leads must be 1 or 2, got {self.leads}")
        if not 0 < self.lowpass_hz < self.fs / 2:
            raise ValueError(f"lowpass_hz must be between 0 and {self.fs / 2}, got {self.lowpass_hz}")
        if len(self.baseline_s) != 2 or not 0 < self.baseline_s[0] < self.baseline_s[1]:
            raise ValueError(f"baseline_s must be two widths, the first shorter, got {self.baseline_s}")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> RecordBeatConfig:
        values = dict(params)
        if isinstance(values.get("reference"), dict):
            values["reference"] = ReferenceConfig(**values["reference"])
        for key in ("groups", "baseline_s"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("fs")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}  # reference: a dict

    @property
    def history_seconds(self) -> float:
        """How much of the patient's signal before a beat its features use (the longest look-back)."""
        if "reference" in self.groups:
            return float(max(self.patient_window_s, self.reference.window_s))
        return float(self.patient_window_s)

    @property
    def latency_seconds(self) -> float:
        """How long after its R peak a beat is complete, beside the next R peak (whichever is later)."""
        return float(self.post_s)

    @property
    def offsets(self) -> np.ndarray:
        """Window sample offsets from the R peak at 360 Hz (full resolution)."""
        return np.arange(-round(self.pre_s * self.fs), round(self.post_s * self.fs))


def condition(signal: np.ndarray, config: RecordBeatConfig) -> np.ndarray:
    """Baseline wander out, noise above ``lowpass_hz`` out, amplitudes kept in mV: every column of a
    (samples, leads) signal at ``config.fs``.

    The baseline is the de Chazal (2004) estimate, a median filter over ``baseline_s[0]`` (removes the
    QRS and P waves) then one over ``baseline_s[1]`` (removes the T wave); unlike a high-pass filter it
    leaves the isoelectric line at 0 mV, so a wave's amplitude is its height above it.
    """
    first, second = (max(1, round(seconds * config.fs)) | 1 for seconds in config.baseline_s)  # odd widths
    baseline = (
        np.column_stack([median_baseline(column, first, second) for column in signal.T])
        if signal.shape[1]
        else signal.copy()
    )
    flat = signal - baseline
    sos = butter(2, config.lowpass_hz, btype="lowpass", fs=config.fs, output="sos")
    if len(flat) <= 3 * 2 * len(sos):  # sosfiltfilt's padding needs a few samples; shorter: no smoothing
        return flat
    return sosfiltfilt(sos, flat, axis=0)


def refine_peaks(lead: np.ndarray, peaks: np.ndarray, half_width: int) -> np.ndarray:
    """Each peak moved to the largest |lead| within ``half_width`` samples (ties: the first)."""
    if len(peaks) == 0 or half_width <= 0:
        return peaks.copy()
    offsets = np.arange(-half_width, half_width + 1)
    index = np.clip(peaks[:, None] + offsets[None, :], 0, len(lead) - 1)
    return index[np.arange(len(peaks)), np.abs(lead[index]).argmax(axis=1)]


def _rolling_median(values: pd.Series, window: int | str) -> np.ndarray:
    """Causal rolling median (the row and those before it): ``window`` rows, or a time span on a
    timedelta index."""
    return values.rolling(window, min_periods=1).median().to_numpy()


UPPER_BEATS, UPPER_QUANTILE = 50, 0.9  # rhythm_refs: the 90th percentile of the 50 preceding intervals


def rhythm_features(peaks: np.ndarray, config: RecordBeatConfig) -> dict[str, np.ndarray]:
    """RR intervals (s) and their ratios to the preceding beats' and the patient's typical rhythm.

    ``rr_recent`` and ``rr_patient`` are medians (a premature beat and its pause, or a gap in the
    detection, barely move them) over intervals that end at or before the beat's own R peak;
    ``rr_irregularity`` is the median successive difference of the recent intervals relative to their
    median: high in atrial fibrillation, where an early beat is not a premature one.
    """
    fs = config.fs
    times = peaks / fs
    n = len(peaks)
    rr = np.diff(times)
    rr_prev = np.concatenate([[np.nan], rr])
    rr_next = np.concatenate([rr, [np.nan]])
    # the series of intervals, each at the time its second beat happens: beat i sees rr_prev[: i + 1]
    by_time = pd.Series(rr_prev, index=pd.to_timedelta(times, unit="s"))
    recent = _rolling_median(pd.Series(rr_prev), config.recent_beats)
    patient = _rolling_median(by_time, f"{int(round(config.patient_window_s * 1000))}ms")
    successive = pd.Series(np.abs(np.diff(rr_prev, prepend=np.nan)))
    irregular = _rolling_median(successive, config.recent_beats)
    if n == 0:
        recent = patient = irregular = np.zeros(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {
            "rr_prev": rr_prev,
            "rr_next": rr_next,
            "rr_recent": recent,
            "rr_prev_recent": rr_prev / recent,
            "rr_next_recent": rr_next / recent,
            "rr_next_prev": rr_next / rr_prev,
            "rr_pause_recent": (rr_prev + rr_next) / (2 * recent),
            "rr_irregularity": irregular / recent,
            "rr_patient": patient,
            "rr_prev_patient": rr_prev / patient,
            "rr_next_patient": rr_next / patient,
            "rr_recent_patient": recent / patient,
        }
        if "rhythm_refs" in config.groups:
            # several references side by side: a mean moves with pauses and ectopic runs where a median
            # does not, an upper percentile stays near the sinus rate when early beats are the majority
            mean_recent = pd.Series(rr_prev).rolling(config.recent_beats, min_periods=1).mean().to_numpy()
            window = f"{int(round(config.patient_window_s * 1000))}ms"
            mean_patient = by_time.rolling(window, min_periods=1).mean().to_numpy()
            upper = pd.Series(rr_prev).rolling(UPPER_BEATS, min_periods=1).quantile(UPPER_QUANTILE).to_numpy()
            if n == 0:
                mean_recent = mean_patient = upper = np.zeros(0)
            out |= {
                "rr_prev_mean_recent": rr_prev / mean_recent,
                "rr_next_mean_recent": rr_next / mean_recent,
                "rr_prev_mean_patient": rr_prev / mean_patient,
                "rr_prev_upper": rr_prev / upper,
                "rr_next_upper": rr_next / upper,
                "rr_prev_before": rr_prev / np.concatenate([[np.nan], rr_prev[:-1]]) if n else np.zeros(0),
            }
    return out


@njit(cache=True)
def _running_median_columns(values: np.ndarray, beats: int) -> np.ndarray:  # pragma: no cover (compiled)
    """Per row i and column, ``np.median`` of rows [i - beats, i): a sorted window, one row in and one
    out per step. NaN where the window holds a NaN (as ``np.median``) and in row 0."""
    n, k = values.shape
    out = np.full((n, k), np.nan)
    window = np.empty(beats + 1)  # a row goes in before the oldest goes out
    for c in range(k):
        size = 0
        nans = 0
        for i in range(1, n):
            new = values[i - 1, c]
            if np.isnan(new):
                nans += 1
            else:  # in before the first value >= it (np.searchsorted's "left"), the rest moved up
                at = 0
                while at < size and window[at] < new:
                    at += 1
                for j in range(size, at, -1):
                    window[j] = window[j - 1]
                window[at] = new
                size += 1
            if i - 1 - beats >= 0:
                old = values[i - 1 - beats, c]
                if np.isnan(old):
                    nans -= 1
                else:  # out: the first value equal to it
                    at = 0
                    while window[at] < old:
                        at += 1
                    for j in range(at, size - 1):
                        window[j] = window[j + 1]
                    size -= 1
            if nans == 0 and size > 0:
                half = size // 2
                out[i, c] = window[half] if size % 2 else (window[half - 1] + window[half]) / 2
    return out


def _running_median(values: np.ndarray, beats: int) -> np.ndarray:
    """Per row i, the median over rows [i - beats, i) (the preceding ones only); NaN for row 0.

    ``values`` is (n, ...); the same numbers as ``np.median`` over each window, in one pass per column
    (a 30-minute record's template took a third of its scoring time as sliding-window medians).
    """
    flat = np.ascontiguousarray(values, dtype=np.float64).reshape(len(values), int(np.prod(values.shape[1:])))
    return _running_median_columns(flat, beats).reshape(values.shape)


def _rowwise_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))


def _lead_morphology(full: np.ndarray, config: RecordBeatConfig) -> dict[str, np.ndarray]:
    """Shape measures of one lead's full-resolution windows (n, offsets), in mV and ms."""
    offsets = config.offsets
    fs = config.fs
    r = int(np.flatnonzero(offsets == 0)[0])
    qrs = (offsets >= -0.1 * fs) & (offsets <= 0.1 * fs)
    p_region = (offsets >= -config.pre_s * fs) & (offsets < -0.08 * fs)
    t_region = offsets >= 0.12 * fs
    qrs_part = full[:, qrs]
    peak = np.abs(qrs_part).max(axis=1)
    # QRS width: the span where |signal| exceeds a quarter of its QRS peak
    above = np.abs(qrs_part) > 0.25 * peak[:, None]
    first = above.argmax(axis=1)
    last = qrs_part.shape[1] - 1 - above[:, ::-1].argmax(axis=1)
    t_part = full[:, t_region]
    slope = np.diff(qrs_part, axis=1) * fs / 1000.0  # mV per ms
    return {
        "r_amp": full[:, r],
        "qrs_max": qrs_part.max(axis=1),
        "qrs_min": qrs_part.min(axis=1),
        "qrs_ptp": np.ptp(qrs_part, axis=1),
        "qrs_width_ms": (last - first + 1) * 1000.0 / fs,
        "qrs_energy": (qrs_part**2).mean(axis=1),
        "qrs_max_slope": np.abs(slope).max(axis=1),
        "p_max": full[:, p_region].max(axis=1),
        "p_mean": full[:, p_region].mean(axis=1),
        "p_energy": (full[:, p_region] ** 2).mean(axis=1),
        "t_max": t_part.max(axis=1),
        "t_min": t_part.min(axis=1),
        "t_peak_ms": (np.abs(t_part).argmax(axis=1) / fs + 0.12) * 1000.0,
    }


def _template_features(
    window: np.ndarray, morph: dict[str, np.ndarray], config: RecordBeatConfig
) -> dict[str, np.ndarray]:
    """Each beat against the patient's dominant beat: the running median of the preceding beats.

    Correlation and distance of the whole window and of its P-wave, QRS and T-wave parts with the
    running median window, and every morphology measure minus its running median (the change from
    the patient's usual beat, which transfers between patients better than the value itself).
    """
    template = _running_median(window, config.template_beats)
    offsets = config.offsets[:: config.window_step] / config.fs
    parts = {
        "p": (offsets >= -config.pre_s) & (offsets < -0.08),
        "qrs": (offsets >= -0.1) & (offsets <= 0.1),
        "t": offsets > 0.12,
    }
    with np.errstate(invalid="ignore", divide="ignore"):
        rms_template = np.sqrt((template**2).mean(axis=1))
        out = {
            "tpl_corr": _rowwise_corr(window, template),
            "tpl_distance": np.sqrt(((window - template) ** 2).mean(axis=1)) / rms_template,
        }
        for name, part in parts.items():
            out[f"tpl_corr_{name}"] = _rowwise_corr(window[:, part], template[:, part])
            out[f"tpl_energy_ratio_{name}"] = (window[:, part] ** 2).mean(axis=1) / (template[:, part] ** 2).mean(
                axis=1
            )
        names = list(morph)
        running = _running_median(np.column_stack([morph[k] for k in names]), config.template_beats)
        for i, name in enumerate(names):
            out[f"rel_{name}"] = morph[name] - running[:, i]
    return out


def record_features(
    signal: np.ndarray, fs: float, peaks: np.ndarray, config: RecordBeatConfig
) -> tuple[np.ndarray, pd.DataFrame]:
    """The refined R peaks (at ``fs``) and the feature table of the beats at ``peaks``.

    ``signal`` is (samples,) or (samples, leads) in millivolts; ``peaks`` are sample indices at ``fs``,
    sorted. With ``config.leads == 2`` and a one-lead signal, the second lead's columns are NaN.
    """
    signal = np.asarray(signal, dtype=np.float64)
    if signal.ndim == 1:
        signal = signal[:, None]
    peaks = np.asarray(peaks, dtype=np.int64)
    n_leads = min(config.leads, signal.shape[1])
    columns = [to_source_rate(signal[:, j], fs, peaks) for j in range(n_leads)]
    at_rate = np.column_stack([c[0] for c in columns])
    moved = columns[0][1]
    filtered = condition(at_rate, config)
    refined = refine_peaks(filtered[:, 0], moved, round(config.refine_s * config.fs))
    # keep the order (refinement can make two close peaks cross)
    refined = np.maximum.accumulate(refined) if len(refined) else refined
    parts: dict[str, np.ndarray] = {}
    # the RR intervals: the rhythm groups' own, and the sinus reference's input
    needs_rhythm = {"rhythm", "patient_rhythm", "rhythm_refs", "reference"} & set(config.groups)
    rhythm = rhythm_features(refined.astype(np.float64), config) if needs_rhythm else {}
    if needs_rhythm:
        keep = {
            "rhythm": ("rr_prev", "rr_next", "rr_recent", "rr_prev_recent", "rr_next_recent", "rr_next_prev",
                       "rr_pause_recent", "rr_irregularity"),
            "patient_rhythm": ("rr_patient", "rr_prev_patient", "rr_next_patient", "rr_recent_patient"),
            "rhythm_refs": ("rr_prev_mean_recent", "rr_next_mean_recent", "rr_prev_mean_patient", "rr_prev_upper",
                            "rr_next_upper", "rr_prev_before"),
        }  # fmt: skip
        for group, names in keep.items():
            if group in config.groups:
                parts.update({name: rhythm[name] for name in names})
    index = np.clip(refined[:, None] + config.offsets[None, :], 0, max(len(filtered) - 1, 0))
    for j, lead in enumerate(LEAD_NAMES[: config.leads]):
        if j >= n_leads:
            full = np.full((len(refined), len(config.offsets)), np.nan)
        else:
            full = filtered[:, j][index] if len(refined) else np.zeros((0, len(config.offsets)))
        lead_parts: dict[str, np.ndarray] = {}
        window = full[:, :: config.window_step]
        if "window" in config.groups:
            lead_parts.update({f"{lead}_w{i:02d}": window[:, i] for i in range(window.shape[1])})
        if j == 0 and "reference" in config.groups:
            parts.update(
                reference_features(
                    full, config.offsets / config.fs, refined / config.fs, rhythm["rr_prev"], rhythm["rr_next"],
                    config.reference,
                )
            )  # fmt: skip
        morph = _lead_morphology(np.nan_to_num(full), config)
        if "morphology" in config.groups:
            lead_parts.update({f"{lead}_{k}": v for k, v in morph.items()})
        if "template" in config.groups:
            lead_parts.update({f"{lead}_{k}": v for k, v in _template_features(window, morph, config).items()})
        if j >= n_leads:  # the lead is missing: every one of its measures is unknown, not zero
            lead_parts = {k: np.full(len(refined), np.nan) for k in lead_parts}
        parts.update(lead_parts)
    frame = pd.DataFrame(parts, index=pd.RangeIndex(len(refined))).astype(np.float32)
    frame = frame.replace([np.inf, -np.inf], np.nan)
    back = np.round(refined * fs / config.fs).astype(np.int64) if fs != config.fs else refined
    return back, frame


def feature_columns(config: RecordBeatConfig) -> list[str]:
    """The columns :func:`record_features` gives for ``config``, without computing any."""
    signal = np.zeros((int(config.fs * 4), config.leads))
    _, frame = record_features(signal, config.fs, np.array([config.fs, 2 * config.fs, 3 * config.fs]), config)
    return list(frame.columns)


def select_groups(config: RecordBeatConfig, groups: Sequence[str], leads: int) -> RecordBeatConfig:
    """The same measurement with fewer groups or leads (the cross-validation's variants)."""
    values = {**config.to_dict(), "groups": tuple(groups), "leads": leads}
    return RecordBeatConfig.from_params(values)


def annotated_beats(directory: str | Path, record: str, config: RecordBeatConfig) -> pd.DataFrame:
    """Every AAMI-class beat of an annotated record, measured at its reference R peak.

    The rhythm and the running template see every annotated QRS complex (``BEAT_SYMBOLS``), as a
    detector would; the rows are the beats with an AAMI class.
    """
    rec = read_record_signals(directory, record)
    symbols = np.asarray(rec.ann_symbols, dtype=object)
    is_beat = np.isin(symbols, list(BEAT_SYMBOLS))
    peaks = rec.ann_samples[is_beat].astype(np.int64)
    refined, features = record_features(rec.signal, rec.fs, peaks, config)
    beat_symbols = symbols[is_beat]
    keep = np.isin(beat_symbols, list(SYMBOL_TO_LABEL))
    meta = pd.DataFrame(
        {
            "record": record,
            "r_peak": peaks[keep],
            "r_refined": refined[keep],
            "symbol": beat_symbols[keep].astype(str),
            "label": np.array([SYMBOL_TO_LABEL[s] for s in beat_symbols[keep]], dtype=np.int8),
            "lead_a": rec.leads[0],
            "lead_b": rec.leads[1] if len(rec.leads) > 1 else "",
        }
    )
    return pd.concat([meta, features[keep].reset_index(drop=True)], axis=1)


def annotated_table(
    directory: str | Path, records: Sequence[str], config: RecordBeatConfig, *, progress: bool = True
) -> pd.DataFrame:
    """:func:`annotated_beats` of every record, in order."""
    parts = [
        annotated_beats(directory, record, config)
        for record in tqdm(records, desc="records", unit="record", disable=not progress)
    ]
    return pd.concat(parts, ignore_index=True)


def model_config(record_params: dict[str, Any], key: str = "model") -> RecordBeatConfig:
    """The measurement a record model uses: ``record.beat`` narrowed to ``record.<key>``'s groups and leads
    (``model``: the served record model; ``reference_model``: the one on the sinus reference)."""
    measured = RecordBeatConfig.from_params(record_params["beat"])
    chosen = record_params[key]
    missing = [g for g in chosen["groups"] if g not in measured.groups]
    if missing or int(chosen["leads"]) > measured.leads:
        raise ValueError(
            f"record.{key} asks for groups {missing or chosen['groups']} and {chosen['leads']} lead(s); "
            f"record.beat measures {list(measured.groups)} on {measured.leads}"
        )
    return select_groups(measured, chosen["groups"], int(chosen["leads"]))
