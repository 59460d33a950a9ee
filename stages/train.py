"""Stage train: a LightGBM model for one protocol, early-stopped on its validation set, as a bundle."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging
import sys
import time
from pathlib import Path

from dvclive import Live
from dvclive.lgbm import DVCLiveCallback

from ecgbeats import __version__
from ecgbeats.analysis.plots import learning_curves, save
from ecgbeats.data.aami import CLASS_NAMES
from ecgbeats.data.dataset import load_beats
from ecgbeats.features.groups import frozen_tsfresh, protocol_groups, split_features
from ecgbeats.features.tsfresh_features import SETTINGS_FILE
from ecgbeats.io import write_json
from ecgbeats.modelling.bundle import Preprocessing, save_bundle
from ecgbeats.modelling.evaluation import evaluate_predictions
from ecgbeats.modelling.model import predict_proba, train_booster
from ecgbeats.operations.compute import ComputeConfig, compute_client, train_booster_dask
from ecgbeats.operations.drift import build_profile
from stages.common import beat_end_of, load_params, setup_logging

log = logging.getLogger("stages.train")


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def log_curves(live: Live, history: dict[str, dict[str, list[float]]]) -> None:
    """Per-iteration curves into DVCLive the way ``DVCLiveCallback`` writes them during training."""
    for step in range(len(history["val"]["multi_logloss"])):
        for split, curves in history.items():
            for metric, values in curves.items():
                live.log_metric(f"{split}/{metric}", values[step])
        live.next_step()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--protocol", required=True)
    parser.add_argument("--data", required=True, type=Path, help="directory with train/val parquet (augment stage)")
    parser.add_argument(
        "--tsfresh", type=Path, help="features stage directory: frozen tsfresh selection and its values"
    )
    parser.add_argument("--model", required=True, type=Path, help="bundle directory to write")
    parser.add_argument("--metrics", required=True, type=Path, help="training metrics JSON")
    parser.add_argument("--plots", required=True, type=Path, help="directory for learning curves")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    setup_logging()
    params = load_params("train", args.params)
    ingest = load_params("ingest", args.params)
    seed = int(params["seed"])
    groups = protocol_groups(params["features"], args.protocol)

    inputs = {name: args.data / f"{name}.parquet" for name in ("train", "val")}
    train, val = (load_beats(inputs[name]) for name in ("train", "val"))
    settings = frozen_tsfresh(groups, args.tsfresh)
    if settings is not None:
        inputs["tsfresh_settings"] = args.tsfresh / SETTINGS_FILE
    x_train, x_val = (
        split_features(frame, groups, args.tsfresh, name) for name, frame in (("train", train), ("val", val))
    )
    y_train, y_val = train["label"].to_numpy(), val["label"].to_numpy()
    log.info("%s: %d training and %d validation beats, %d features", args.protocol, len(x_train), len(x_val),
             x_train.shape[1])  # fmt: skip

    compute = ComputeConfig.from_params(load_params("compute", args.params, optional=True))
    live = Live(dir=str(args.plots / "live"), dvcyaml=False, save_dvc_exp=False)
    start = time.perf_counter()
    with compute_client(compute) as client:  # local: None, nothing started
        if client is None:
            booster, history = train_booster(
                x_train, y_train, x_val, y_val, params, seed=seed, callbacks=[DVCLiveCallback(live=live)]
            )
        else:
            booster, history = train_booster_dask(
                client, x_train, y_train, x_val, y_val, params, seed=seed, num_boost_round=compute.num_boost_round
            )
            log_curves(live, history)  # lightgbm.dask takes no callbacks: the same curves, after the fact
    seconds = time.perf_counter() - start
    live.end()

    best = booster.best_iteration or booster.current_iteration()
    fit = {
        name: evaluate_predictions(y, predict_proba(booster, x), n_boot=0, seed=seed)
        for name, x, y in (("train", x_train, y_train), ("val", x_val, y_val))
    }
    summary = {
        "best_iteration": best,
        "iterations_run": len(history["val"]["multi_logloss"]),
        "engine": compute.engine,
        "features": x_train.shape[1],
        "synthetic_training_beats": int(train["augmented"].sum()) if "augmented" in train else 0,
        **{f"{name}_{key}": fit[name][key] for name in fit for key in ("accuracy", "macro_f1")},
        "train_val_macro_f1_gap": round(fit["train"]["macro_f1"] - fit["val"]["macro_f1"], 6),
        "val_multi_logloss": round(history["val"]["multi_logloss"][best - 1], 6),
        "train_multi_logloss": round(history["train"]["multi_logloss"][best - 1], 6),
    }
    # deterministic: the same inputs and params give the same bytes (no clock, no commit: the commit
    # that holds dvc.lock names the bundle's hash, and the inputs' hashes name the data)
    meta = {
        "protocol": args.protocol,
        "class_names": list(CLASS_NAMES),
        "preprocessing": dataclasses.asdict(
            Preprocessing(local_rr_beats=int(ingest["local_rr_beats"]), beat_end=beat_end_of(ingest, args.protocol))
        ),
        "features": {
            "groups": groups,
            "columns": list(x_train.columns),
            "tsfresh": dataclasses.asdict(settings) if settings is not None else None,
        },
        "provenance": {
            "ecgbeats_version": __version__,
            "params": {"train": {**params, "features": groups}, "compute": {"engine": compute.engine}},
            "inputs": {str(path): file_sha256(path) for path in inputs.values()},
        },
        "training": summary,
        "validation": {k: v for k, v in fit["val"].items() if k != "ci95"},
    }
    # the drift reference: key feature distributions and predicted class mix of the training split,
    # from the model's features (what the service's drift window sees), so a feature the model does
    # not get is not profiled
    predicted = predict_proba(booster, x_train).argmax(axis=1)
    reference = build_profile(x_train, predicted, list(CLASS_NAMES), source="train")
    save_bundle(args.model, booster, meta, reference=reference)
    write_json(summary, args.metrics)
    save(learning_curves(history, best, f"{args.protocol}"), args.plots / "learning_curves.png")
    log.info("%s: best iteration %d, val macro-F1 %.4f, %.1f s", args.protocol, best, fit["val"]["macro_f1"], seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
