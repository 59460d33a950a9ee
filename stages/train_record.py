"""Stage train_record: the record model fitted on whole patients, as a bundle the service can serve.

``--data`` takes one or more record-beat parquets: DS1 alone gives the model that is scored on the DS2
patients; DS1 and DS2 together give the model the service ships, whose expected performance on new
patients is the DS1 model's DS2 figure (``--expected``). The round count is the cross-validation's
median best iteration: with no patient left out there is nothing honest to early-stop on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ecgbeats import __version__
from ecgbeats.data.aami import CLASS_NAMES
from ecgbeats.features.record import feature_columns, model_config
from ecgbeats.io import write_json
from ecgbeats.modelling.bundle import save_bundle
from ecgbeats.modelling.evaluation import evaluate_predictions, headline_figures
from ecgbeats.modelling.model import fit_booster
from ecgbeats.modelling.rhythm_rules import RhythmRules
from ecgbeats.operations.drift import build_profile
from stages.common import load_params, setup_logging

log = logging.getLogger("stages.train_record")


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def expected_performance(paths: list[Path]) -> dict[str, object]:
    """The DS1 model's DS2 figures, annotated beats and end to end, that a model refit on all stands for."""
    out: dict[str, object] = {}
    for path in paths:
        report = json.loads(path.read_text())
        gross = report.get("gross", report)  # an EC57 report keeps its pooled figures under "gross"
        out[path.stem] = {"beats": gross["beats"], **headline_figures(gross)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, nargs="+", type=Path, help="record-beat parquets to fit on")
    parser.add_argument("--cv", required=True, type=Path, help="the crossval stage's metrics (round count)")
    parser.add_argument(
        "--expected",
        nargs="*",
        type=Path,
        default=[],
        help="DS2 metrics of the DS1 model, stated in the bundle as the expected performance",
    )
    parser.add_argument("--model", required=True, type=Path, help="bundle directory to write")
    parser.add_argument("--metrics", required=True, type=Path, help="training metrics JSON")
    parser.add_argument(
        "--model-key", default="model", help="the record.<key> block of the model (groups, leads, lightgbm)"
    )
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)  # fmt: skip
    setup_logging()
    record = load_params("record", args.params)
    train = load_params("train", args.params)
    params = {**train, **record[args.model_key]["lightgbm"]}
    config = model_config(record, args.model_key)
    columns = feature_columns(config)
    beats = pd.concat([pd.read_parquet(path) for path in args.data], ignore_index=True)
    x, y = beats[columns], beats["label"].to_numpy(dtype=np.int64)
    cv = json.loads(args.cv.read_text())
    rounds = int(cv["spread"]["best_iteration"]["median"])
    rules = RhythmRules.from_dict(cv.get("rhythm_rules"))
    booster = fit_booster(x, y, params, seed=int(train["seed"]), num_boost_round=rounds)
    proba = rules.apply(booster.predict(x), beats, config.reference)
    fit = evaluate_predictions(y, proba, n_boot=0)
    # the drift reference: the training beats' key measures and predicted class mix (the service's gauges)
    reference = build_profile(x, proba.argmax(axis=1), list(CLASS_NAMES), source="train")
    records = sorted(beats["record"].unique().tolist())
    summary = {
        "beats": len(beats),
        "records": len(records),
        "features": len(columns),
        "rounds": rounds,
        "train_accuracy": fit["accuracy"],
        "train_macro_f1_nsvf": fit["macro_f1_nsvf"],
    }
    meta = {
        "protocol": "interpatient",
        "class_names": list(CLASS_NAMES),
        "preprocessing": {"representation": "record", **config.to_dict()},
        "patient_context": {
            "history_seconds": config.history_seconds,
            "latency": f"the next R peak, and at least {config.latency_seconds:g} s after the beat's own R peak",
            "latency_seconds_after_r": config.latency_seconds,
            "leads": config.leads,
            "reference": (
                "each recording's own sinus reference beat and rhythm, found without labels from the beats of "
                f"the preceding {config.reference.window_s:g} s (ecgbeats.features.reference)"
                if "reference" in config.groups
                else None
            ),
            "note": "a strip shorter than history_seconds gives the first beats a shorter patient context",
        },
        "features": {"groups": list(config.groups), "columns": columns, "tsfresh": None},
        # the rhythm interpretation over the model's classes, chosen on the DS1 cross-validation
        "rhythm_rules": rules.to_dict(),
        "training_records": records,
        "expected_on_new_patients": expected_performance(args.expected) or None,
        "provenance": {
            "ecgbeats_version": __version__,
            "params": {"train": params, "record": record[args.model_key], "rounds": rounds, "rules": record["rules"]},
            "inputs": {str(path): file_sha256(path) for path in [*args.data, args.cv, *args.expected]},
        },
        "training": summary,
    }
    save_bundle(args.model, booster, meta, reference=reference)
    write_json(summary, args.metrics)
    log.info("record model: %d beats of %d records, %d rounds", len(beats), len(records), rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
