"""Stage train: a LightGBM model for one protocol, early-stopped on its validation set, as a bundle."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging
import subprocess
import sys
import time
from pathlib import Path

import yaml
from dvclive import Live
from dvclive.lgbm import DVCLiveCallback

from ecgbeats import __version__
from ecgbeats.aami import CLASS_NAMES
from ecgbeats.bundle import save_bundle
from ecgbeats.compute import compute_client, train_booster_dask
from ecgbeats.dataset import load_beats
from ecgbeats.drift import build_profile
from ecgbeats.evaluation import evaluate_predictions
from ecgbeats.io import write_json
from ecgbeats.model import predict_proba, train_booster
from ecgbeats.plots import learning_curves, save
from stages.common import (
    TSFRESH_SETTINGS_FILE,
    compute_config,
    feature_groups,
    load_params,
    setup_logging,
    split_features,
    tsfresh_settings,
)

log = logging.getLogger("stages.train")


def git_commit() -> dict[str, object]:
    """The code the model was trained with: HEAD and whether the work tree differed from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                    text=True, check=True).stdout.strip())  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": head, "dirty": dirty}


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
    seed = int(params["seed"])
    groups = feature_groups(params, args.protocol)

    inputs = {name: args.data / f"{name}.parquet" for name in ("train", "val")}
    train, val = (load_beats(inputs[name]) for name in ("train", "val"))
    settings = tsfresh_settings(groups, args.tsfresh)
    if settings is not None:
        inputs["tsfresh_settings"] = args.tsfresh / TSFRESH_SETTINGS_FILE
    x_train, x_val = (
        split_features(frame, groups, args.tsfresh, name) for name, frame in (("train", train), ("val", val))
    )
    y_train, y_val = train["label"].to_numpy(), val["label"].to_numpy()
    log.info("%s: %d training and %d validation beats, %d features", args.protocol, len(x_train), len(x_val),
             x_train.shape[1])  # fmt: skip

    compute = compute_config(args.params)
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
        "training_seconds": round(seconds, 1),
        "engine": compute.engine,
        "features": x_train.shape[1],
        "synthetic_training_beats": int(train["augmented"].sum()) if "augmented" in train else 0,
        **{f"{name}_{key}": fit[name][key] for name in fit for key in ("accuracy", "macro_f1")},
        "train_val_macro_f1_gap": round(fit["train"]["macro_f1"] - fit["val"]["macro_f1"], 6),
        "val_multi_logloss": round(history["val"]["multi_logloss"][best - 1], 6),
        "train_multi_logloss": round(history["train"]["multi_logloss"][best - 1], 6),
    }
    with open(args.params) as handle:
        all_params = yaml.safe_load(handle)
    meta = {
        "protocol": args.protocol,
        "class_names": list(CLASS_NAMES),
        "features": {
            "groups": groups,
            "columns": list(x_train.columns),
            "tsfresh": dataclasses.asdict(settings) if settings is not None else None,
        },
        "provenance": {
            **git_commit(),
            "ecgbeats_version": __version__,
            "params": {
                key: all_params[key]
                for key in ("ingest", "split", "impute", "augment", "features", "train", "compute")
                if key in all_params
            },
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
