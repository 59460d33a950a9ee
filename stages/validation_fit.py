"""Shared by the ablation stages: train one variant, score it on validation only."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from ecgbeats.aami import CLASS_NAMES
from ecgbeats.evaluation import evaluate_predictions
from ecgbeats.model import predict_proba, train_booster

log = logging.getLogger("stages.validation_fit")


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
    start = time.perf_counter()
    # train.seed is itself a LightGBM parameter and would override ``seed``: set both
    booster, _ = train_booster(x_train, y_train, x_val, y_val, {**params, "seed": seed, "log_every": 10_000}, seed=seed)
    seconds = time.perf_counter() - start
    report = evaluate_predictions(y_val, predict_proba(booster, x_val), n_boot=0)
    return {
        "macro_f1": report["macro_f1"],
        "f1": {c: report["per_class"][c]["f1"] for c in CLASS_NAMES},
        "S_Se": report["aami"]["S"]["Se"],
        "S_+P": report["aami"]["S"]["+P"],
        "V_Se": report["aami"]["V"]["Se"],
        "V_+P": report["aami"]["V"]["+P"],
        "best_iteration": int(booster.best_iteration or booster.current_iteration()),
        "seconds": round(seconds, 1),
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
        "seconds": round(float(np.mean([r["seconds"] for r in runs])), 1),
        "f1": {},
    }
    for c in CLASS_NAMES:
        values = [r["f1"][c] for r in runs if r["f1"][c] is not None]
        out["f1"][c] = round(float(np.mean(values)), 4) if values else None
    for key in ("S_Se", "S_+P", "V_Se", "V_+P"):
        values = [r[key] for r in runs if r[key] is not None]
        out[key] = round(float(np.mean(values)), 4) if values else None
    return out
