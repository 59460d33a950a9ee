"""LightGBM training: class weighting, a macro-F1 evaluation metric, and early stopping."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, cast

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from ecgbeats.data.aami import CLASS_NAMES

log = logging.getLogger(__name__)

CLASS_WEIGHTS = ("none", "balanced", "sqrt")
# params.yaml keys that are not LightGBM parameters; ``seed`` is the explicit argument, never the section's
_TRAINER_KEYS = {"class_weight", "num_boost_round", "early_stopping_rounds", "features", "log_every", "seed"}


def sample_weights(labels: np.ndarray, scheme: str) -> np.ndarray | None:
    """Per-beat weights: ``balanced`` gives each class the same total weight, ``sqrt`` half-way."""
    if scheme not in CLASS_WEIGHTS:
        raise ValueError(f"class_weight must be one of {CLASS_WEIGHTS}, got {scheme!r}")
    if scheme == "none":
        return None
    counts = np.bincount(labels, minlength=len(CLASS_NAMES)).astype(np.float64)
    present = counts > 0
    per_class = np.zeros_like(counts)
    per_class[present] = len(labels) / (present.sum() * counts[present])
    if scheme == "sqrt":
        per_class = np.sqrt(per_class)
    return per_class[labels]


def macro_f1(preds: np.ndarray, data: lgb.Dataset) -> tuple[str, float, bool]:
    """LightGBM ``feval``: macro-F1 of the arg-max class over the classes present."""
    labels = cast(np.ndarray, data.get_label()).astype(int)  # the labels were set, as an array
    return "macro_f1", float(f1_score(labels, preds.argmax(axis=1), average="macro")), True


def lightgbm_params(params: dict[str, Any], seed: int) -> dict[str, Any]:
    """LightGBM parameters from the ``train`` params, deterministic for a given seed and thread count."""
    core = {k: v for k, v in params.items() if k not in _TRAINER_KEYS}
    return {
        "objective": "multiclass",
        "num_class": len(CLASS_NAMES),
        "metric": "multi_logloss",
        "seed": seed,
        "deterministic": True,
        "force_col_wise": True,
        "verbosity": -1,
        **core,
    }


def train_booster(
    x_train: pd.DataFrame,
    y_train: np.ndarray,
    x_val: pd.DataFrame,
    y_val: np.ndarray,
    params: dict[str, Any],
    *,
    seed: int,
    callbacks: Sequence[Callable[..., None]] = (),
) -> tuple[lgb.Booster, dict[str, dict[str, list[float]]]]:
    """Train with early stopping on the validation multi-logloss; return the booster and the curves."""
    history: dict[str, dict[str, list[float]]] = {}
    train_set = lgb.Dataset(
        x_train, label=y_train, weight=sample_weights(y_train, params["class_weight"]), free_raw_data=False
    )
    val_set = lgb.Dataset(x_val, label=y_val, reference=train_set, free_raw_data=False)
    booster = lgb.train(
        lightgbm_params(params, seed),
        train_set,
        num_boost_round=int(params["num_boost_round"]),
        valid_sets=[train_set, val_set],
        valid_names=["train", "val"],
        feval=macro_f1,
        callbacks=[
            lgb.early_stopping(int(params["early_stopping_rounds"]), first_metric_only=True, verbose=False),
            lgb.log_evaluation(int(params.get("log_every", 50))),
            lgb.record_evaluation(history),
            *callbacks,
        ],
    )
    log.info("best iteration %d of %d", booster.best_iteration, booster.current_iteration())
    return booster, history


def predict_proba(booster: lgb.Booster, features: pd.DataFrame) -> np.ndarray:
    # dense input without pred_contrib: always an ndarray, not the stub's sparse-matrix list
    return cast(np.ndarray, booster.predict(features, num_iteration=booster.best_iteration or None))


def fit_booster(
    x: pd.DataFrame, y: np.ndarray, params: dict[str, Any], *, seed: int, num_boost_round: int
) -> lgb.Booster:
    """Train a fixed number of rounds on every beat given (no validation set: the round count was
    chosen beforehand, by the cross-validation over patients)."""
    train_set = lgb.Dataset(x, label=y, weight=sample_weights(y, params["class_weight"]), free_raw_data=False)
    return lgb.train(lightgbm_params(params, seed), train_set, num_boost_round=num_boost_round)
