"""Stage learning_curve: training- and validation-set quality against the training-set size, the
other half of the over/underfitting picture (the iteration curves come from the train stage)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ecgbeats.analysis.plots import save, subplots
from ecgbeats.data.dataset import load_beats
from ecgbeats.data.sampling import stratified_pick
from ecgbeats.features.groups import protocol_groups, split_features
from ecgbeats.io import write_csv
from ecgbeats.modelling.variants import fit_variant, score_variant
from stages.common import load_params, setup_logging

log = logging.getLogger("studies.learning_curve")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--protocol", required=True)
    parser.add_argument("--data", required=True, type=Path, help="directory with train/val parquet (augment stage)")
    parser.add_argument("--tsfresh", type=Path, help="features stage directory (when the groups include tsfresh)")
    parser.add_argument("--plots", required=True, type=Path, help="directory for size_curve.csv/.png")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    setup_logging()
    train_params = load_params("train", args.params)
    fractions = [float(f) for f in load_params("learning_curve", args.params)["fractions"]]
    seed = int(train_params["seed"])
    groups = protocol_groups(train_params["features"], args.protocol)
    train, val = load_beats(args.data / "train.parquet"), load_beats(args.data / "val.parquet")
    x_val, y_val = split_features(val, groups, args.tsfresh, "val"), val["label"].to_numpy()
    x_all = split_features(train, groups, args.tsfresh, "train")
    rows = []
    for fraction in fractions:
        keep = (
            np.ones(len(train), bool) if fraction >= 1 else stratified_pick(train["label"].to_numpy(), fraction, seed)
        )
        part = train[keep]
        x, y = x_all[keep].reset_index(drop=True), part["label"].to_numpy()
        booster = fit_variant(x, y, x_val, y_val, train_params, seed=seed)
        fit = {"train": score_variant(booster, x, y), "val": score_variant(booster, x_val, y_val)}
        rows.append({"fraction": fraction, "train_beats": len(part), "best_iteration": booster.best_iteration,
                     **{f"{s}_macro_f1": fit[s]["macro_f1"] for s in fit}})  # fmt: skip
        log.info("%s: %d beats -> %s", args.protocol, len(part), rows[-1])
    table = pd.DataFrame(rows)
    write_csv(table, args.plots / "size_curve.csv")
    fig, ax = subplots(figsize=(6, 4))
    ax.plot(table["train_beats"], table["train_macro_f1"], "o-", label="train")
    ax.plot(table["train_beats"], table["val_macro_f1"], "o--", label="validation")
    ax.set(xscale="log", xlabel="training beats (log scale)", ylabel="macro-F1",
           title=f"{args.protocol}: learning curve over training-set size")  # fmt: skip
    ax.legend()
    save(fig, args.plots / "size_curve.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
