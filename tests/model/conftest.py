from __future__ import annotations

import pytest

from ecgbeats.data.aami import CLASS_NAMES
from ecgbeats.data.sampling import stratified_pick
from ecgbeats.features.groups import build_features
from ecgbeats.modelling.model import train_booster

FIXTURE_TRAIN_PARAMS = {
    "class_weight": "sqrt",
    "num_boost_round": 200,
    "early_stopping_rounds": 20,
    "log_every": 0,
    "num_threads": 1,
    "learning_rate": 0.1,
    "num_leaves": 15,
    "min_child_samples": 5,
    "feature_fraction": 0.5,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
}
GROUPS = ["samples", "length", "rr"]


def bundle_meta(groups, columns):
    return {
        "protocol": "fixture",
        "class_names": list(CLASS_NAMES),
        "preprocessing": {"local_rr_beats": 10},
        "features": {"groups": list(groups), "columns": list(columns)},
        "provenance": {"ecgbeats_version": "0.1.0"},
    }


@pytest.fixture(scope="session")
def fixture_split(fixture_beats):
    val = stratified_pick(fixture_beats["label"].to_numpy(), 0.25, seed=0)
    return fixture_beats[~val].reset_index(drop=True), fixture_beats[val].reset_index(drop=True)


@pytest.fixture(scope="session")
def fixture_model(fixture_split):
    train, val = fixture_split
    x_train, x_val = build_features(train, GROUPS), build_features(val, GROUPS)
    booster, _ = train_booster(
        x_train, train["label"].to_numpy(), x_val, val["label"].to_numpy(), FIXTURE_TRAIN_PARAMS, seed=0
    )
    return booster, GROUPS, list(x_train.columns)
