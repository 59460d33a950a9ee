"""Model behaviour on real fixture beats: clear cases right, invariance to a tiny amplitude shift,
learning curves from the callbacks, and determinism."""

from __future__ import annotations

import numpy as np
import pandas as pd
from dvclive import Live
from dvclive.lgbm import DVCLiveCallback

from ecgbeats.data.dataset import SAMPLE_COLUMNS
from ecgbeats.features.groups import build_features
from ecgbeats.modelling.model import predict_proba, train_booster
from tests.model.conftest import FIXTURE_TRAIN_PARAMS, GROUPS


def test_clear_normal_and_ventricular_beats_are_recognised(fixture_model, fixture_split):
    booster, groups, _ = fixture_model
    _, val = fixture_split
    proba = predict_proba(booster, build_features(val, groups))
    for label in (0, 2):  # N and V beats the model has never seen
        beats = val["label"].to_numpy() == label
        assert (proba[beats].argmax(axis=1) == label).mean() >= 0.9


def test_tiny_amplitude_shift_does_not_change_predictions(fixture_model, fixture_split):
    booster, groups, _ = fixture_model
    _, val = fixture_split
    shifted = val.copy()
    shifted[SAMPLE_COLUMNS] = shifted[SAMPLE_COLUMNS] + 0.001
    before = predict_proba(booster, build_features(val, groups)).argmax(axis=1)
    after = predict_proba(booster, build_features(shifted, groups)).argmax(axis=1)
    assert (before == after).mean() >= 0.99


def test_callbacks_record_learning_curves_for_train_and_validation(tmp_path, fixture_split):
    train, val = fixture_split
    x_train, x_val = build_features(train, GROUPS), build_features(val, GROUPS)
    live = Live(dir=str(tmp_path / "live"), dvcyaml=False, save_dvc_exp=False)
    booster, history = train_booster(
        x_train, train["label"].to_numpy(), x_val, val["label"].to_numpy(), FIXTURE_TRAIN_PARAMS, seed=0,
        callbacks=[DVCLiveCallback(live=live)],
    )  # fmt: skip
    live.end()
    rounds = len(history["val"]["multi_logloss"])
    assert set(history) == {"train", "val"} and set(history["val"]) == {"multi_logloss", "macro_f1"}
    assert rounds > booster.best_iteration > 0
    for subset in ("train", "val"):
        for metric in ("multi_logloss", "macro_f1"):
            curve = pd.read_csv(tmp_path / "live" / "plots" / "metrics" / subset / f"{metric}.tsv", sep="\t")
            assert len(curve) == rounds and list(curve.columns) == ["step", metric]
    assert history["train"]["multi_logloss"][-1] < history["train"]["multi_logloss"][0]


def test_training_is_deterministic(fixture_model, fixture_split):
    booster, groups, _ = fixture_model
    train, val = fixture_split
    x_train, x_val = build_features(train, groups), build_features(val, groups)
    again, _ = train_booster(
        x_train, train["label"].to_numpy(), x_val, val["label"].to_numpy(), FIXTURE_TRAIN_PARAMS, seed=0
    )
    assert again.model_to_string() == booster.model_to_string()
    np.testing.assert_array_equal(predict_proba(again, x_val), predict_proba(booster, x_val))
