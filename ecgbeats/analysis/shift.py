"""Synthetic data shifts on a beat table, label shift, and the statistics that measure their cost.

A beat table holds per beat the scaled samples ``s000..s186`` (min-max scaled over the beat, zero
padded after ``length``), the unpadded ``length`` and the RR intervals (s). Every shift here returns
a new table in exactly that format, so the model and the drift monitor see it as they would see
real beats. Each shift has a ``severity``: 0 is the identity (the same table, up to float round-off:
the transforms run with zero magnitude), larger is a larger change; everything random is seeded.

Per-beat shifts reuse the augmentation transforms (:mod:`ecgbeats.processing.augment`), applied to the
unpadded part of each beat and then re-scaled and padded as ``ingest`` does:

- ``noise``: white Gaussian noise; SNR = ``snr_db`` - 20 log10(severity) dB;
- ``baseline_wander``: a 0.1-0.5 Hz sinusoid of ``amplitude`` × severity of the beat's range;
- ``gain``: a smooth random gain along the beat (SD ``sigma`` × severity): a uniform gain is
  removed exactly by the per-beat scaling, a gain that differs between QRS and T is not;
- ``powerline``: mains interference of ``amplitude`` × severity of the beat's range;
- ``time_stretch``: the beat resampled by ``1 + severity × change`` (a heart-rate change); RR
  intervals and the window length follow the same factor;
- ``dropout``: lost samples (:class:`ecgbeats.processing.impute.GapModel`, rates × severity) filled with the
  chosen imputation method, then re-scaled;
- ``sampling``: the beats cut again from the raw records through another acquisition pipeline
  (severity ``k`` picks the ``k``-th of ``pipelines``: a device sampling rate, resampled to the
  MIT-BIH rate with an anti-aliasing filter, and/or a band-pass filter), see :func:`recut_beats`.

Label shift does not change beats: :func:`prevalence_weights` re-weights a set to other class
prevalences, and :func:`weighted_scores` gives Se, +P and F1 under those weights (Se is unchanged by
label shift; +P is not).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecgbeats.data.aami import CLASS_NAMES, MACRO_NSVF_LABELS, SYMBOL_TO_LABEL
from ecgbeats.data.beats import BEAT_SAMPLES, SOURCE_FS, cut_beats
from ecgbeats.data.dataset import SAMPLE_COLUMNS, read_record
from ecgbeats.modelling.evaluation import _safe
from ecgbeats.operations.drift import class_shares, compare
from ecgbeats.processing.augment import apply_transform, rescale_pad, scale_range, stretch, transform_beat
from ecgbeats.processing.impute import GapModel, KnnBeatImputer, apply_gaps, impute, simulate_gaps, unpadded_mask

log = logging.getLogger(__name__)

KINDS = ("noise", "baseline_wander", "gain", "powerline", "time_stretch", "dropout", "sampling")
RR_COLUMNS = ("rr_prev", "rr_next", "rr_local")
K = len(CLASS_NAMES)


# ---------------------------------------------------------------- per-beat shifts


def _replace_beats(
    beats: pd.DataFrame, samples: np.ndarray, lengths: np.ndarray, rr_factor: np.ndarray
) -> pd.DataFrame:
    out = beats.copy()
    out[SAMPLE_COLUMNS] = np.asarray(samples, dtype=np.float32)
    out["length"] = np.asarray(lengths).astype(beats["length"].dtype)
    for column in RR_COLUMNS:
        out[column] = (beats[column].to_numpy(dtype=np.float64) * rr_factor).astype(beats[column].dtype)
    return out


def per_beat(beats: pd.DataFrame, step: Callable[..., tuple[np.ndarray, float, int]], seed: int) -> pd.DataFrame:
    """``step(signal, rng) -> (signal, RR factor, shift)`` on every beat's unpadded part, re-scaled and padded."""
    rng = np.random.default_rng(seed)
    samples = beats[SAMPLE_COLUMNS].to_numpy(dtype=np.float64)
    lengths = beats["length"].to_numpy()
    out = np.empty_like(samples, dtype=np.float32)
    new_lengths = np.empty(len(beats), dtype=np.int64)
    factors = np.empty(len(beats))
    for i in range(len(beats)):
        out[i], new_lengths[i], factors[i] = transform_beat(samples[i], lengths[i], [step], rng)
    return _replace_beats(beats, out, new_lengths, factors)


def _fixed_stretch(factor: float) -> Callable[..., tuple[np.ndarray, float, int]]:
    return lambda signal, rng: stretch(signal, factor)


def dropout(
    beats: pd.DataFrame,
    severity: float,
    seed: int,
    *,
    dropout_rate: float = 0.02,
    gaps_per_beat: float = 0.5,
    gap_length: float = 6.0,
    method: str = "linear",
    knn: KnnBeatImputer | None = None,
) -> pd.DataFrame:
    """Samples lost inside the beats (rates × severity), imputed with ``method``, then re-scaled.

    The per-beat min-max scaling is redone over the imputed unpadded part (a gap over the R peak
    leaves a smaller maximum); with ``method="none"`` the NaN stay and nothing is re-scaled.
    """
    samples = beats[SAMPLE_COLUMNS].to_numpy(dtype=np.float64)
    lengths = beats["length"].to_numpy()
    model = GapModel(
        dropout_rate=min(severity * dropout_rate, 0.9), gaps_per_beat=severity * gaps_per_beat, gap_length=gap_length
    )
    lost = simulate_gaps(samples, lengths, model, seed)
    filled = impute(apply_gaps(samples, lost), lengths, method, knn=knn)
    if method != "none":
        for row in np.flatnonzero(lost.any(axis=1)):
            kept = int(np.clip(lengths[row], 2, BEAT_SAMPLES))
            filled[row] = rescale_pad(filled[row, :kept], *scale_range(samples[row, :kept], int(lengths[row])))
    return _replace_beats(beats, filled, lengths, np.ones(len(beats)))


def recut_beats(
    beats: pd.DataFrame,
    raw_dir: str | Path,
    *,
    fs: float | None = None,
    bandpass: Sequence[float] | None = None,
    order: int = 2,
    beat_end: str = "next_beat",
) -> pd.DataFrame:
    """The same beats cut again from the raw records through another acquisition pipeline.

    The first channel of each record (as ``ingest`` reads it) goes through a device: resampled to
    ``fs`` (``scipy.signal.resample_poly``, which low-pass filters; the MIT-BIH beats were decimated
    without one) and/or band-pass filtered (zero-phase Butterworth of ``order``, ``bandpass`` Hz) at
    the device rate. The R peaks move to the device's sample grid, and ``cut_beats`` cuts the beats
    as the service would from that device's strip. Without ``fs`` and ``bandpass`` this rebuilds
    the ingested beats exactly (``beat_end`` as ingest had it). RR intervals are kept (they come from
    the annotations).
    """
    from scipy.signal import butter, resample_poly, sosfiltfilt

    samples = beats[SAMPLE_COLUMNS].to_numpy(dtype=np.float32).copy()
    lengths = beats["length"].to_numpy().copy()
    for record, rows in beats.groupby("record", observed=True).indices.items():
        signal, source_fs, _, ann_samples, ann_symbols = read_record(raw_dir, str(record))
        peaks = ann_samples[np.isin(np.asarray(ann_symbols, dtype=object), list(SYMBOL_TO_LABEL))]
        # as ingest cut them: beats end at the next beat, or at the next annotation of any type
        bounds = np.asarray(ann_samples) if beat_end == "next_annotation" else peaks
        x, device_fs = np.asarray(signal, dtype=np.float64), float(fs or source_fs)
        if device_fs != source_fs:
            ratio = Fraction(device_fs).limit_denominator(10_000) / Fraction(source_fs).limit_denominator(10_000)
            x = resample_poly(x, ratio.numerator, ratio.denominator)
            peaks = np.clip(np.round(peaks * device_fs / source_fs).astype(np.int64), 0, len(x) - 1)
            bounds = np.clip(np.round(bounds * device_fs / source_fs).astype(np.int64), 0, len(x) - 1)
        if bandpass is not None:
            x = sosfiltfilt(butter(order, list(bandpass), btype="bandpass", fs=device_fs, output="sos"), x)
        cut = cut_beats(x, device_fs, peaks, bounds=bounds)
        index = beats["beat_index"].to_numpy()[rows].astype(np.int64)
        samples[rows], lengths[rows] = cut.samples[index], cut.lengths[index]
    return _replace_beats(beats, samples, lengths, np.ones(len(beats)))


def shift_beats(
    beats: pd.DataFrame,
    kind: str,
    severity: float,
    *,
    seed: int,
    options: Mapping[str, Any] | None = None,
    knn: KnnBeatImputer | None = None,
    raw_dir: str | Path | None = None,
) -> pd.DataFrame:
    """``beats`` under shift ``kind`` at ``severity`` (0: the same table); ``options`` are the kind's settings."""
    if kind not in KINDS:
        raise ValueError(f"unknown shift {kind!r}; known: {KINDS}")
    if severity < 0:
        raise ValueError(f"severity must be >= 0, got {severity}")
    options = dict(options or {})
    if kind in ("noise", "baseline_wander", "powerline"):
        return per_beat(beats, partial(apply_transform, kind, severity=severity, **options), seed)
    if kind == "gain":
        return per_beat(beats, partial(apply_transform, "amplitude", severity=severity, **options), seed)
    if kind == "time_stretch":
        return per_beat(beats, _fixed_stretch(1.0 + severity * float(options.get("change", -0.08))), seed)
    if kind == "dropout":
        return dropout(beats, severity, seed, knn=knn, **options)
    if severity == 0:  # sampling: no other acquisition pipeline, the ingested beats as they are
        return beats.copy()
    pipelines = options.get("pipelines", [])
    step = int(round(severity))
    if raw_dir is None or not 1 <= step <= len(pipelines):
        raise ValueError(f"sampling needs raw records and a pipeline for severity {severity} (have {len(pipelines)})")
    return recut_beats(beats, raw_dir, beat_end=options.get("beat_end", "next_beat"), **pipelines[step - 1])


def level(kind: str, severity: float, options: Mapping[str, Any] | None = None) -> str:
    """The physical size of a shift, for tables and plots (e.g. ``SNR 18 dB``)."""
    options = dict(options or {})
    if severity == 0:
        return "none"
    if kind == "noise":
        return f"SNR {float(options.get('snr_db', 25.0)) - 20 * np.log10(severity):.0f} dB"
    if kind in ("baseline_wander", "powerline"):
        default = 0.1 if kind == "baseline_wander" else 0.05
        return f"{severity * float(options.get('amplitude', default)):.0%} of the beat's range"
    if kind == "gain":
        return f"gain SD {severity * float(options.get('sigma', 0.15)):.0%} along the beat"
    if kind == "time_stretch":
        factor = 1.0 + severity * float(options.get("change", -0.08))
        return f"heart rate {1 / factor - 1:+.0%} (window ×{factor:.2f})"
    if kind == "dropout":
        return (
            f"{min(severity * float(options.get('dropout_rate', 0.02)), 0.9):.0%} dropouts + "
            f"{severity * float(options.get('gaps_per_beat', 0.5)):.1f} gaps/beat, {options.get('method', 'linear')}"
        )
    pipeline = options.get("pipelines", [])[int(round(severity)) - 1]
    parts = [f"{pipeline['fs']:g} Hz device" if pipeline.get("fs") else f"{SOURCE_FS} Hz"]
    if pipeline.get("bandpass"):
        parts.append("{:g}-{:g} Hz band-pass".format(*pipeline["bandpass"]))
    return ", ".join(parts)


# ---------------------------------------------------------------- subsampling and record-relative inputs


def running_mean(values: np.ndarray, groups: np.ndarray, order: np.ndarray, window: int) -> np.ndarray:
    """Per row, the mean of ``values`` over its group's last ``window`` rows up to and including it (by ``order``)."""
    values = np.asarray(values, dtype=np.float64)
    squeeze = values.ndim == 1
    values = values.reshape(len(values), -1)
    out = np.empty_like(values)
    sort = np.lexsort((np.asarray(order), np.asarray(groups)))
    sorted_groups = np.asarray(groups)[sort]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    for start, stop in zip(starts, np.r_[starts[1:], len(sort)], strict=True):
        rows = sort[start:stop]
        block = np.nan_to_num(values[rows])
        counts = np.cumsum(~np.isnan(values[rows]), axis=0)
        total = np.cumsum(block, axis=0)
        lag = np.arange(len(rows)) - window
        valid = lag >= 0
        total[valid] -= total[lag[valid]]
        counts[valid] -= counts[lag[valid]]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[rows] = np.where(counts > 0, total / np.maximum(counts, 1), np.nan)
    return out[:, 0] if squeeze else out


def record_relative(beats: pd.DataFrame, window: int = 100) -> pd.DataFrame:
    """Each beat relative to its patient's running average (the previous ``window`` beats of its record).

    The samples minus the running mean beat (the patient's own template), and RR intervals and length
    divided by their running means: causal and unsupervised, so a monitor can compute them too.
    """
    groups, order = beats["record"].astype(str).to_numpy(), beats["beat_index"].to_numpy(dtype=np.int64)
    samples = beats[SAMPLE_COLUMNS].to_numpy(dtype=np.float64)
    template = running_mean(samples, groups, order, window)
    rhythm = beats[["rr_prev", "rr_next", "length"]].to_numpy(dtype=np.float64)
    typical = running_mean(rhythm, groups, order, window)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = rhythm / typical
    frame = pd.DataFrame(samples - template, columns=[f"rel_{c}" for c in SAMPLE_COLUMNS])
    frame[["rr_prev_rec", "rr_next_rec", "length_rec"]] = ratio
    return frame.astype(np.float32).replace([np.inf, -np.inf], np.nan)


# ---------------------------------------------------------------- scores and bootstrap intervals


def confusion_rows(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """Flattened 5×5 confusion counts per group (per beat without ``groups``): shape (groups, 25)."""
    codes = np.asarray(y_true, dtype=np.int64) * K + np.asarray(y_pred, dtype=np.int64)
    index = np.arange(len(codes)) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]
    rows = np.zeros((int(index.max()) + 1 if len(index) else 0, K * K))
    np.add.at(rows, (index, codes), 1.0)
    return rows


def scores_from_confusion(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Recall (Se), precision (+P) and F1 per class, macro-F1 over the classes present and over N, S, V, F
    present, of one or many (…, 25) confusions; the names are those of ``ecgbeats.modelling.evaluation``."""
    cm = np.asarray(cm, dtype=np.float64).reshape(*np.shape(cm)[:-1], K, K)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    support, predicted = cm.sum(axis=-1), cm.sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, tp / support, np.nan)
        precision = np.where(predicted > 0, tp / predicted, np.nan)
        f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), np.nan)
        present = support > 0
        macro = np.where(present, f1, 0.0).sum(axis=-1) / present.sum(axis=-1)
        nsvf = present & np.isin(np.arange(K), MACRO_NSVF_LABELS)
        macro_nsvf = np.where(nsvf, f1, 0.0).sum(axis=-1) / nsvf.sum(axis=-1)
    return {"recall": recall, "precision": precision, "f1": f1, "macro_f1": macro, "macro_f1_nsvf": macro_nsvf}


def _interval(values: np.ndarray, level: float) -> dict[str, float | None]:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return {"low": None, "high": None}
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return {"low": round(float(low), 6), "high": round(float(high), 6)}


def bootstrap_gap(
    y_a: np.ndarray,
    pred_a: np.ndarray,
    y_b: np.ndarray,
    pred_b: np.ndarray,
    *,
    n_boot: int,
    seed: int,
    groups_a: np.ndarray | None = None,
    groups_b: np.ndarray | None = None,
    level: float = 0.95,
) -> dict[str, Any]:
    """Set B minus set A (independent sets) per class (F1, Se, +P) and macro-F1, with percentile intervals.

    Beats are resampled with replacement, or whole groups (e.g. records: beats of one patient are not
    independent, so record-level intervals are the honest ones for a patient shift).
    """
    rng = np.random.default_rng(seed)
    rows_a, rows_b = confusion_rows(y_a, pred_a, groups_a), confusion_rows(y_b, pred_b, groups_b)
    point_a, point_b = scores_from_confusion(rows_a.sum(0)), scores_from_confusion(rows_b.sum(0))
    boot_a = np.stack(
        [np.bincount(rng.integers(0, len(rows_a), len(rows_a)), minlength=len(rows_a)) @ rows_a for _ in range(n_boot)]
    )
    boot_b = np.stack(
        [np.bincount(rng.integers(0, len(rows_b), len(rows_b)), minlength=len(rows_b)) @ rows_b for _ in range(n_boot)]
    )
    sa, sb = scores_from_confusion(boot_a), scores_from_confusion(boot_b)
    out: dict[str, Any] = {
        macro: {
            "a": _safe(point_a[macro]),
            "b": _safe(point_b[macro]),
            "gap": _safe(point_b[macro] - point_a[macro]),
            "ci95": _interval(sb[macro] - sa[macro], level),
        }
        for macro in ("macro_f1", "macro_f1_nsvf")
    }
    out["per_class"] = {}
    for i, name in enumerate(CLASS_NAMES):
        out["per_class"][name] = {
            metric: {
                "a": _safe(point_a[metric][i]),
                "b": _safe(point_b[metric][i]),
                "gap": _safe(point_b[metric][i] - point_a[metric][i]),
                "ci95": _interval(sb[metric][:, i] - sa[metric][:, i], level),
            }
            for metric in ("f1", "recall", "precision")
        }
    return out


def paired_bootstrap(
    y: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    groups: np.ndarray,
    *,
    n_boot: int,
    seed: int,
    level: float = 0.95,
) -> dict[str, Any]:
    """Macro-F1 of predictions B minus A on the same beats, groups resampled together (paired)."""
    rng = np.random.default_rng(seed)
    rows_a, rows_b = confusion_rows(y, pred_a, groups), confusion_rows(y, pred_b, groups)
    counts = np.stack(
        [np.bincount(rng.integers(0, len(rows_a), len(rows_a)), minlength=len(rows_a)) for _ in range(n_boot)]
    )
    diff = scores_from_confusion(counts @ rows_b)["macro_f1"] - scores_from_confusion(counts @ rows_a)["macro_f1"]
    gap = scores_from_confusion(rows_b.sum(0))["macro_f1"] - scores_from_confusion(rows_a.sum(0))["macro_f1"]
    return {"gap": _safe(gap), "ci95": _interval(diff, level), "share_positive": round(float((diff > 0).mean()), 4)}


def set_scores(y_true: np.ndarray, y_pred: np.ndarray, weights: np.ndarray | None = None) -> dict[str, Any]:
    """Macro-F1, accuracy and per-class recall (Se), precision (+P) and F1 (optionally under per-beat weights)."""
    codes = np.asarray(y_true, dtype=np.int64) * K + np.asarray(y_pred, dtype=np.int64)
    cm = np.bincount(codes, weights=weights, minlength=K * K).astype(np.float64)
    s = scores_from_confusion(cm)
    return {
        "macro_f1": _safe(s["macro_f1"]),
        "macro_f1_nsvf": _safe(s["macro_f1_nsvf"]),
        "accuracy": _safe(np.trace(cm.reshape(K, K)) / cm.sum()),
        "per_class": {
            name: {"recall": _safe(s["recall"][i]), "precision": _safe(s["precision"][i]), "f1": _safe(s["f1"][i])}
            for i, name in enumerate(CLASS_NAMES)
        },
    }


# ---------------------------------------------------------------- label shift


def scaled_prevalence(labels: np.ndarray, multipliers: Mapping[str, float]) -> np.ndarray:
    """The set's class shares with some classes' shares multiplied (then renormalised to sum 1)."""
    unknown = [c for c in multipliers if c not in CLASS_NAMES]
    if unknown:
        raise ValueError(f"unknown classes {unknown}")
    shares = class_shares(labels, K) * np.array([float(multipliers.get(c, 1.0)) for c in CLASS_NAMES])
    return shares / shares.sum()


def prevalence_weights(labels: np.ndarray, target: Sequence[float] | np.ndarray) -> np.ndarray:
    """Per-beat importance weights that give the set the ``target`` class shares (mean weight 1)."""
    labels = np.asarray(labels, dtype=np.int64)
    current = class_shares(labels, K)
    target = np.asarray(target, dtype=np.float64)
    if np.any((current == 0) & (target > 0)):
        raise ValueError("a class absent from the set cannot be given a positive share")
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(current > 0, target / current, 0.0)
    return per_class[labels]


def resample_to_prevalence(labels: np.ndarray, target: Sequence[float] | np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of ``n`` beats drawn with replacement within each class so the classes have ``target`` shares."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.round(np.asarray(target, dtype=np.float64) * n).astype(np.int64)
    picked = [rng.choice(np.flatnonzero(labels == c), size=counts[c], replace=True) for c in range(K) if counts[c] > 0]
    return np.concatenate(picked)


def label_shift_table(
    y_true: np.ndarray, y_pred: np.ndarray, scenarios: Mapping[str, Mapping[str, float]], *, seed: int, resample_n: int
) -> list[dict[str, Any]]:
    """Per scenario (class-share multipliers): shares, and Se/+P/F1 by re-weighting and by a seeded resample."""
    rows = []
    for i, (name, multipliers) in enumerate(scenarios.items()):
        target = scaled_prevalence(y_true, multipliers or {})
        weighted = set_scores(y_true, y_pred, prevalence_weights(y_true, target))
        drawn = resample_to_prevalence(y_true, target, resample_n, seed + i)
        rows.append(
            {
                "scenario": name,
                "multipliers": dict(multipliers or {}),
                "shares": {c: round(float(v), 6) for c, v in zip(CLASS_NAMES, target, strict=True)},
                "weighted": weighted,
                "resampled": set_scores(y_true[drawn], y_pred[drawn]),
            }
        )
    return rows


# ---------------------------------------------------------------- drift and causes


def drift_summary(profile: Mapping[str, Any], beats: pd.DataFrame, predicted: np.ndarray) -> dict[str, Any]:
    """The drift monitor's view of ``beats`` against a reference profile: per-feature PSI/KS, class mix, flag."""
    report = compare(profile, beats, predicted)
    features = report["features"]
    return {
        "n_beats": report["n_beats"],
        "level": report["level"],
        "drift": report["drift"],
        "worst": report["worst"],
        "max_feature_psi": max((f["psi"] for f in features.values()), default=None),
        "max_ks": max((f["ks"] for f in features.values()), default=None),
        "class_mix_psi": report["class_mix"]["psi"],
        "psi": {name: f["psi"] for name, f in features.items()},
        "ks": {name: f["ks"] for name, f in features.items()},
    }


def class_templates(beats: pd.DataFrame, label: int = 0, min_beats: int = 20) -> pd.DataFrame:
    """Mean beat (samples) of one class per record, for records with at least ``min_beats`` of it."""
    rows = beats[beats["label"].to_numpy() == label]
    means = rows.groupby(rows["record"].astype(str), observed=True)[SAMPLE_COLUMNS].mean()
    sizes = rows.groupby(rows["record"].astype(str), observed=True).size()
    return means[sizes.reindex(means.index) >= min_beats]


def template_distance(templates: pd.DataFrame, reference: pd.DataFrame) -> pd.Series:
    """Per template, the RMS distance (scaled units) to the nearest reference template: how unlike every
    training patient a patient's typical beat is."""
    a, b = templates.to_numpy(dtype=np.float64), reference.to_numpy(dtype=np.float64)
    d = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).mean(axis=-1))
    return pd.Series(d.min(axis=1), index=templates.index, name="template_distance")


def unpadded_fraction(beats: pd.DataFrame) -> np.ndarray:
    """Share of each row that is signal (the rest is zero padding)."""
    return unpadded_mask(beats["length"].to_numpy()).mean(axis=1)
