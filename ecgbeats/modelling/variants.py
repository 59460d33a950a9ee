"""Fit a model variant and score it: the one recipe of every study that retrains (ablations, baselines,
learning curves, the imputation gap study, the shift mitigations)."""

from __future__ import annotations

import logging
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from ecgbeats.data.aami import CLASS_NAMES
from ecgbeats.modelling.evaluation import evaluate_predictions
from ecgbeats.modelling.model import predict_proba, train_booster

log = logging.getLogger(__name__)


def fit_variant(
    x_train: pd.DataFrame,
    y_train: np.ndarray,
    x_val: pd.DataFrame,
    y_val: np.ndarray,
    params: dict[str, Any],
    *,
    seed: int | None = None,
) -> lgb.Booster:
    """One quiet LightGBM fit with the ``train`` params (plus a variant's overrides), early-stopped on
    validation; ``seed`` defaults to ``params["seed"]``."""
    seed = int(params["seed"]) if seed is None else seed
    booster, _ = train_booster(x_train, y_train, x_val, y_val, {**params, "log_every": 0}, seed=seed)
    return booster


def score_variant(
    booster: lgb.Booster, x: pd.DataFrame, y: np.ndarray, *, n_boot: int = 0, seed: int = 0
) -> dict[str, Any]:
    """The full metrics (``evaluate_predictions``) of a fitted variant on one set."""
    return evaluate_predictions(y, predict_proba(booster, x), n_boot=n_boot, seed=seed)


def fit_score(
    x_train: pd.DataFrame,
    y_train: np.ndarray,
    x_val: pd.DataFrame,
    y_val: np.ndarray,
    params: dict[str, Any],
    *,
    seed: int,
) -> dict[str, Any]:
    """Validation macro-F1 and per-class F1 of one LightGBM fit (early-stopped on validation)."""
    booster = fit_variant(x_train, y_train, x_val, y_val, params, seed=seed)
    report = score_variant(booster, x_val, y_val)
    return {
        "macro_f1": report["macro_f1"],
        "f1": {c: report["per_class"][c]["f1"] for c in CLASS_NAMES},
        "S_Se": report["aami"]["S"]["Se"],
        "S_+P": report["aami"]["S"]["+P"],
        "V_Se": report["aami"]["V"]["Se"],
        "V_+P": report["aami"]["V"]["+P"],
        "best_iteration": int(booster.best_iteration or booster.current_iteration()),
        "features": int(x_train.shape[1]),
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean (and SD over seeds) of the scores of repeated fits."""
    macro = [r["macro_f1"] for r in runs]
    out: dict[str, Any] = {
        "macro_f1": round(float(np.mean(macro)), 4),
        "macro_f1_sd": round(float(np.std(macro)), 4),
        "seeds": len(runs),
        "features": runs[0]["features"],
        "best_iteration": round(float(np.mean([r["best_iteration"] for r in runs])), 1),
        "f1": {},
    }
    for c in CLASS_NAMES:
        values = [r["f1"][c] for r in runs if r["f1"][c] is not None]
        out["f1"][c] = round(float(np.mean(values)), 4) if values else None
    for key in ("S_Se", "S_+P", "V_Se", "V_+P"):
        values = [r[key] for r in runs if r[key] is not None]
        out[key] = round(float(np.mean(values)), 4) if values else None
    return out
