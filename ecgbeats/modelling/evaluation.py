"""Classification metrics for the five AAMI classes, with bootstrap intervals and calibration."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    roc_auc_score,
)

from ecgbeats.data.aami import CLASS_NAMES, MACRO_NSVF_LABELS

LABELS = list(range(len(CLASS_NAMES)))


def _safe(value: float | np.floating | np.ndarray | None) -> float | None:
    """JSON has no NaN: an undefined metric (a class absent from the set) is null."""
    return None if value is None or not np.isfinite(value) else round(float(value), 6)


def per_class_table(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, dict[str, float | int | None]]:
    """Precision (+P), recall (Se), specificity, F1 and support per class, from the confusion matrix."""
    cm = confusion_matrix(y_true, y_pred, labels=LABELS)
    total = cm.sum()
    table: dict[str, dict[str, float | int | None]] = {}
    for i, name in enumerate(CLASS_NAMES):
        tp = cm[i, i]
        fn = cm[i].sum() - tp
        fp = cm[:, i].sum() - tp
        tn = total - tp - fn - fp
        precision = tp / (tp + fp) if tp + fp else np.nan
        recall = tp / (tp + fn) if tp + fn else np.nan
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else np.nan
        table[name] = {
            "precision": _safe(precision),
            "recall": _safe(recall),
            "specificity": _safe(tn / (tn + fp) if tn + fp else np.nan),
            "f1": _safe(f1),
            "support": int(tp + fn),
        }
    return table


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, bins: int = 15) -> float:
    """ECE of the top-class confidence over equal-width bins."""
    curve = reliability_curve(y_true, proba, bins)
    n = len(y_true)
    return float(sum(row["count"] / n * abs(row["accuracy"] - row["confidence"]) for row in curve))


def reliability_curve(y_true: np.ndarray, proba: np.ndarray, bins: int = 15) -> list[dict[str, float]]:
    """Per confidence bin: mean confidence of the predicted class, its accuracy, and the count."""
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_true
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    rows = []
    for b in range(bins):
        mask = which == b
        if mask.any():
            rows.append(
                {
                    "confidence": float(confidence[mask].mean()),
                    "accuracy": float(correct[mask].mean()),
                    "count": int(mask.sum()),
                }
            )
    return rows


def bootstrap_ci(
    y_true: np.ndarray, y_pred: np.ndarray, *, n_boot: int, seed: int, level: float = 0.95
) -> dict[str, dict[str, float]]:
    """Percentile bootstrap intervals for accuracy and macro-F1 (beats resampled with replacement)."""
    rng = np.random.default_rng(seed)
    k = len(CLASS_NAMES)
    n = len(y_true)
    pair = y_true * k + y_pred
    acc, mf1 = np.empty(n_boot), np.empty(n_boot)
    for b in range(n_boot):
        cm = np.bincount(pair[rng.integers(0, n, n)], minlength=k * k).reshape(k, k)
        tp, support, predicted = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
        present = support > 0
        acc[b] = tp.sum() / n
        mf1[b] = np.mean(2 * tp[present] / (support[present] + predicted[present]))
    tail = (1 - level) / 2 * 100

    def interval(values: np.ndarray) -> dict[str, float]:
        low, high = np.percentile(values, [tail, 100 - tail])
        return {"low": round(float(low), 6), "high": round(float(high), 6)}

    return {"accuracy": interval(acc), "macro_f1": interval(mf1)}


def present_labels(y_true: np.ndarray) -> list[int]:
    return sorted(set(np.asarray(y_true).tolist()))


def evaluate_predictions(y_true: np.ndarray, proba: np.ndarray, *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Every figure the evaluate stage reports for one set.

    Macro-F1 averages over the classes present in the set, so a class with no beats (Q in some
    inter-patient sets) neither counts as zero nor inflates the mean; ``macro_f1_nsvf`` averages over
    N, S, V and F only, as inter-patient results usually are (a few Q beats would weigh a fifth).
    """
    y_true = np.asarray(y_true, dtype=int)
    proba = np.asarray(proba, dtype=np.float64)
    y_pred = proba.argmax(axis=1)
    present = present_labels(y_true)
    per_class = per_class_table(y_true, y_pred)
    for i, name in enumerate(CLASS_NAMES):
        positive = y_true == i
        has_both = 0 < positive.sum() < len(y_true)
        per_class[name]["roc_auc"] = _safe(roc_auc_score(positive, proba[:, i]) if has_both else np.nan)
        per_class[name]["pr_auc"] = _safe(average_precision_score(positive, proba[:, i]) if has_both else np.nan)
    report: dict[str, Any] = {
        "beats": len(y_true),
        "accuracy": _safe(accuracy_score(y_true, y_pred)),
        "macro_f1": _safe(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "macro_f1_nsvf": _safe(
            f1_score(
                y_true, y_pred, labels=[c for c in present if c in MACRO_NSVF_LABELS], average="macro", zero_division=0
            )
        ),  # fmt: skip
        "weighted_f1": _safe(f1_score(y_true, y_pred, labels=present, average="weighted", zero_division=0)),
        "balanced_accuracy": _safe(balanced_accuracy_score(y_true, y_pred)),
        "cohen_kappa": _safe(cohen_kappa_score(y_true, y_pred)),
        "ece": _safe(expected_calibration_error(y_true, proba)),
        "per_class": per_class,
        "aami": {c: {"Se": per_class[c]["recall"], "+P": per_class[c]["precision"]} for c in ("S", "V")},
    }
    if n_boot > 0:
        report["ci95"] = bootstrap_ci(y_true, y_pred, n_boot=n_boot, seed=seed)
    return report


def confused_pairs(y_true: np.ndarray, y_pred: np.ndarray, top: int = 5) -> list[dict[str, Any]]:
    """The most frequent (true, predicted) error pairs."""
    cm = confusion_matrix(y_true, y_pred, labels=LABELS)
    np.fill_diagonal(cm, 0)
    order = np.dstack(np.unravel_index(np.argsort(-cm, axis=None), cm.shape))[0]
    return [
        {"true": CLASS_NAMES[i], "predicted": CLASS_NAMES[j], "count": int(cm[i, j])}
        for i, j in order[:top]
        if cm[i, j] > 0
    ]


def headline_figures(report: Mapping[str, Any]) -> dict[str, float | None]:
    """Accuracy, macro-F1 over N, S, V, F and Se/+P of S, V and F, from an :func:`evaluate_predictions`
    report or an EC57 one (``ecgbeats.modelling.ec57.class_figures``: Se and +P per class)."""
    per = report["per_class"]
    out: dict[str, float | None] = {"accuracy": report["accuracy"], "macro_f1_nsvf": report["macro_f1_nsvf"]}
    for c in ("S", "V", "F"):
        out[f"{c}_Se"] = per[c]["recall"] if "recall" in per[c] else per[c]["Se"]
        out[f"{c}_+P"] = per[c]["precision"] if "precision" in per[c] else per[c]["+P"]
    return out


def per_record_figures(records: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, dict[str, Any]]:
    """Per record: beats, accuracy and Se/+P of S and V (None where the record has no such beat, or
    none is called so)."""
    records = np.asarray(records).astype(str)
    out: dict[str, dict[str, Any]] = {}
    for record in sorted(set(records.tolist())):
        here = records == record
        truth, called = np.asarray(y_true)[here], np.asarray(y_pred)[here]
        row: dict[str, Any] = {"beats": int(here.sum()), "accuracy": round(float((truth == called).mean()), 6)}
        for name in ("S", "V"):
            c = CLASS_NAMES.index(name)
            hits = int(((truth == c) & (called == c)).sum())
            row[f"{name}_beats"] = int((truth == c).sum())
            row[f"{name}_Se"] = round(hits / (truth == c).sum(), 6) if (truth == c).any() else None
            row[f"{name}_+P"] = round(hits / (called == c).sum(), 6) if (called == c).any() else None
        out[record] = row
    return out
