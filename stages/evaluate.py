"""Stage evaluate: one trained bundle on one held-out set: metrics, figures, and error analysis."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ecgbeats.analysis.plots import confusion_figure, error_examples_figure, reliability_figure, roc_pr_figure, save
from ecgbeats.data.aami import CLASS_NAMES
from ecgbeats.data.dataset import SAMPLE_COLUMNS, load_beats
from ecgbeats.features.record import LEAD_NAMES
from ecgbeats.io import write_csv, write_json
from ecgbeats.modelling.bundle import load_bundle
from ecgbeats.modelling.evaluation import confused_pairs, evaluate_predictions, reliability_curve
from stages.common import load_params, setup_logging

log = logging.getLogger("stages.evaluate")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, type=Path, help="bundle directory (train stage)")
    parser.add_argument("--data", required=True, type=Path, help="parquet of the set to evaluate")
    parser.add_argument("--metrics", required=True, type=Path, help="metrics JSON to write")
    parser.add_argument("--plots", required=True, type=Path, help="directory for this set's figures")
    parser.add_argument("--title", help="name of the model in figure titles (default: its protocol)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    setup_logging()
    params = load_params("evaluate", args.params)
    bundle = load_bundle(args.model)
    beats = load_beats(args.data)
    y_true = beats["label"].to_numpy()
    proba = bundle.predict_proba(beats)
    y_pred = proba.argmax(axis=1)
    title = f"{args.title or bundle.meta['protocol']} {args.data.stem}"

    report = evaluate_predictions(y_true, proba, n_boot=int(params["bootstrap"]), seed=int(params["seed"]))
    pairs = confused_pairs(y_true, y_pred)
    report["most_confused"] = {f"{p['true']}->{p['predicted']}": p["count"] for p in pairs}
    write_json(report, args.metrics)

    names = np.array(CLASS_NAMES)
    write_csv(pd.DataFrame({"actual": names[y_true], "predicted": names[y_pred]}), args.plots / "confusion.csv")
    curve = reliability_curve(y_true, proba)
    write_csv(pd.DataFrame(curve), args.plots / "reliability.csv")
    save(confusion_figure(y_true, y_pred, title), args.plots / "confusion.png")
    save(roc_pr_figure(y_true, proba, title), args.plots / "roc_pr.png")
    save(reliability_figure(curve, report["ece"], title), args.plots / "reliability.png")
    if bundle.representation == "record":  # the first lead's window, in mV, from the P to the T wave
        config = bundle.record_config
        columns = [c for c in beats.columns if c.startswith(f"{LEAD_NAMES[0]}_w")]
        time_ms, ylabel = (
            config.offsets[:: config.window_step] * 1000.0 / config.fs,
            "mV (first lead, baseline removed)",
        )
    else:
        columns, time_ms, ylabel = SAMPLE_COLUMNS, None, "scaled amplitude"
    samples = beats[columns].to_numpy()
    means = np.stack(
        [samples[y_true == i].mean(axis=0) if (y_true == i).any() else np.zeros(samples.shape[1]) for i in range(5)]
    )
    save(error_examples_figure(samples, y_true, y_pred, means, pairs, f"{title}: misclassified beats",
                               time_ms=time_ms, ylabel=ylabel), args.plots / "errors.png")  # fmt: skip
    log.info("%s: accuracy %.4f, macro-F1 %.4f", title, report["accuracy"], report["macro_f1"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
