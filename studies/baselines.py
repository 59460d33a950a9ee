"""Stage baselines: majority class, logistic regression, and LightGBM on the raw samples only,
evaluated on the same sets and in the same format as the main model."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ecgbeats.data.dataset import load_beats
from ecgbeats.features.groups import build_features, protocol_groups, split_features
from ecgbeats.io import write_json
from ecgbeats.modelling.baselines import full_proba, logistic_regression, majority_class
from ecgbeats.modelling.evaluation import evaluate_predictions
from ecgbeats.modelling.model import predict_proba
from ecgbeats.modelling.variants import fit_variant
from stages.common import load_params, setup_logging

log = logging.getLogger("studies.baselines")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--protocol", required=True)
    parser.add_argument("--data", required=True, type=Path, help="directory of the protocol's set parquet files")
    parser.add_argument("--tsfresh", type=Path, help="features stage directory (when the groups include tsfresh)")
    parser.add_argument("--sets", required=True, nargs="+", help="sets to evaluate, e.g. test holdout")
    parser.add_argument("--metrics", required=True, type=Path)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    setup_logging()
    train_params = load_params("train", args.params)
    seed = int(train_params["seed"])
    groups = protocol_groups(train_params["features"], args.protocol)
    beats = {name: load_beats(args.data / f"{name}.parquet") for name in ["train", "val", *args.sets]}
    labels = {name: frame["label"].to_numpy() for name, frame in beats.items()}
    features = {name: split_features(frame, groups, args.tsfresh, name) for name, frame in beats.items()}
    raw = {name: build_features(frame, ["samples"]) for name, frame in beats.items()}

    predictors = {}
    predictors["majority_class"] = (full_proba, majority_class(features["train"], labels["train"]), features)
    log.info("%s: logistic regression", args.protocol)
    lr = logistic_regression(features["train"], labels["train"], seed=seed)
    predictors["logistic_regression"] = (full_proba, lr, features)
    log.info("%s: LightGBM on the raw samples", args.protocol)
    booster = fit_variant(raw["train"], labels["train"], raw["val"], labels["val"], train_params, seed=seed)
    predictors["lightgbm_raw_samples"] = (lambda model, x: predict_proba(model, x), booster, raw)

    report = {}
    for name, (predict, model, inputs) in predictors.items():
        report[name] = {
            subset: evaluate_predictions(labels[subset], predict(model, inputs[subset]), n_boot=0, seed=seed)
            for subset in args.sets
        }
        log.info("%s %s: %s", args.protocol, name, {s: r["macro_f1"] for s, r in report[name].items()})
    write_json(report, args.metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
