"""Cross-validation over patients: every beat predicted by a model that never saw its record.

The folds are whole records (``patient_folds``), drawn so each fold holds a similar class mix
(scikit-learn's ``StratifiedGroupKFold``: S, V and F beats sit in a few records, so a plain record
shuffle can leave a fold without them). Each fold is predicted by a model trained on the others,
early-stopped on one of them (the next fold, never the predicted one), so the held-out patient
decides nothing about its own model. The pooled out-of-fold predictions give the figures every
interpatient choice is made on; the spread over folds says how far to trust a difference.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from ecgbeats.data.aami import CLASS_NAMES
from ecgbeats.modelling.evaluation import evaluate_predictions
from ecgbeats.modelling.model import predict_proba, train_booster

log = logging.getLogger(__name__)

FOLD_FIGURES = ("accuracy", "macro_f1_nsvf", "S_Se", "S_+P", "V_Se", "V_+P", "F_+P")


def patient_folds(records: np.ndarray, labels: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold number (0..n_folds-1) per beat; all beats of a record share one fold."""
    records = np.asarray(records)
    unique = np.unique(records)
    if not 2 <= n_folds <= len(unique):
        raise ValueError(f"cv.folds={n_folds} must be between 2 and the {len(unique)} records available")
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = np.full(len(records), -1, dtype=np.int64)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(records)), np.asarray(labels), groups=records)):
        folds[test] = k
    return folds


def fold_figures(report: dict[str, Any]) -> dict[str, float | None]:
    """The figures compared across folds and variants, from an ``evaluate_predictions`` report."""
    per = report["per_class"]
    return {
        "accuracy": report["accuracy"],
        "macro_f1_nsvf": report["macro_f1_nsvf"],
        "S_Se": per["S"]["recall"],
        "S_+P": per["S"]["precision"],
        "V_Se": per["V"]["recall"],
        "V_+P": per["V"]["precision"],
        "F_+P": per["F"]["precision"],
    }


def cross_validate(
    x: pd.DataFrame, y: np.ndarray, folds: np.ndarray, params: dict[str, Any], *, seed: int
) -> dict[str, Any]:
    """Out-of-fold probabilities, pooled and per-fold figures, and each fold's best iteration."""
    n_folds = int(folds.max()) + 1
    oof = np.full((len(y), len(CLASS_NAMES)), np.nan)
    per_fold: list[dict[str, Any]] = []
    for k in range(n_folds):
        stop_fold = (k + 1) % n_folds  # early stopping on a neighbouring fold, never the predicted one
        train = (folds != k) & (folds != stop_fold)
        stop = folds == stop_fold
        test = folds == k
        booster, _ = train_booster(x[train], y[train], x[stop], y[stop], {**params, "log_every": 0}, seed=seed)
        oof[test] = predict_proba(booster, x[test])
        report = evaluate_predictions(y[test], oof[test], n_boot=0)
        best = int(booster.best_iteration or booster.current_iteration())
        per_fold.append({"fold": k, "beats": int(test.sum()), "best_iteration": best, **fold_figures(report)})
        log.info("fold %d/%d: %d beats, best iteration %d, macro-F1 NSVF %.3f", k + 1, n_folds, test.sum(), best,
                 report["macro_f1_nsvf"])  # fmt: skip
    pooled = evaluate_predictions(y, oof, n_boot=0)
    return {"oof": oof, "pooled": pooled, "folds": per_fold, "summary": summarise_folds(pooled, per_fold)}


def summarise_folds(pooled: dict[str, Any], per_fold: list[dict[str, Any]]) -> dict[str, Any]:
    """Pooled figures with the mean, SD, min and max over folds (a fold without a class gives None)."""
    out: dict[str, Any] = {"pooled": fold_figures(pooled)}
    for name in FOLD_FIGURES:
        values = np.array([f[name] for f in per_fold if f[name] is not None], dtype=np.float64)
        out[name] = (
            {"mean": round(float(values.mean()), 4), "sd": round(float(values.std()), 4),
             "min": round(float(values.min()), 4), "max": round(float(values.max()), 4)}
            if len(values) else None
        )  # fmt: skip
    iterations = [f["best_iteration"] for f in per_fold]
    out["best_iteration"] = {"median": int(np.median(iterations)), "min": min(iterations), "max": max(iterations)}
    return out
