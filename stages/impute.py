"""Stage impute: fill lost samples inside beats with the chosen method; measure every method under gaps.

The beats on disk have no lost samples, so the data step leaves them unchanged (a NaN inside a
beat's unpadded part would be filled; the zero padding never is). The measurement simulates the
gap model at increasing gap lengths on the VALIDATION beats: reconstruction error of each method on
the lost samples, and macro-F1 / per-class F1 of a model trained on the clean training beats
(``train`` params and feature groups) when the validation beats carry imputed gaps.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ecgbeats.aami import CLASS_NAMES
from ecgbeats.dataset import SAMPLE_COLUMNS, load_beats
from ecgbeats.evaluation import evaluate_predictions
from ecgbeats.features import build_features
from ecgbeats.impute import (
    METHODS,
    GapModel,
    KnnBeatImputer,
    apply_gaps,
    impute,
    impute_frame,
    reconstruction_error,
    simulate_gaps,
    unpadded_mask,
)
from ecgbeats.io import atomic_dir, write_csv, write_json
from ecgbeats.model import predict_proba, train_booster
from stages.common import feature_groups, load_params, setup_logging

log = logging.getLogger("stages.impute")


def measure(train: pd.DataFrame, val: pd.DataFrame, params: dict, train_params: dict, knn: KnnBeatImputer,
            groups: list[str]) -> tuple[list[dict], dict]:  # fmt: skip
    """Rows of (gap length, method) with reconstruction error and validation F1 scores."""
    seed = int(params["seed"])
    booster, _ = train_booster(build_features(train, groups), train["label"].to_numpy(), build_features(val, groups),
                               val["label"].to_numpy(), {**train_params, "log_every": 10_000},
                               seed=int(train_params["seed"]))  # fmt: skip
    truth = val[SAMPLE_COLUMNS].to_numpy(dtype=np.float64)
    lengths = val["length"].to_numpy()
    y = val["label"].to_numpy()
    rows = []
    for gap_length in params["gap_lengths"]:
        model = GapModel(
            dropout_rate=float(params["dropout_rate"]) if gap_length > 0 else 0.0,
            gaps_per_beat=float(params["gaps_per_beat"]) if gap_length > 0 else 0.0,
            gap_length=float(gap_length),
        )
        lost = simulate_gaps(truth, lengths, model, seed)
        gapped = apply_gaps(truth, lost)
        for method in params["methods"]:
            start = time.perf_counter()
            filled = impute(gapped, lengths, method, knn=knn)
            seconds = time.perf_counter() - start
            frame = val.copy()
            frame[SAMPLE_COLUMNS] = filled.astype(np.float32)
            report = evaluate_predictions(y, predict_proba(booster, build_features(frame, groups)), n_boot=0)
            err = reconstruction_error(truth, filled, lost)
            rows.append({
                "gap_length": gap_length,
                "lost_share": round(float(lost.sum() / max(1, unpadded_mask(lengths).sum())), 4),
                "method": method,
                "rmse": round(err["rmse"], 5) if err["samples"] else None,
                "mae": round(err["mae"], 5) if err["samples"] else None,
                "impute_ms_per_beat": round(1000 * seconds / len(val), 4),
                "macro_f1": report["macro_f1"],
                **{f"f1_{c}": report["per_class"][c]["f1"] for c in CLASS_NAMES},
            })  # fmt: skip
            log.info("gap %s %-6s rmse %s macro-F1 %.4f", gap_length, method, rows[-1]["rmse"], report["macro_f1"])
    return rows, {"groups": groups, "best_iteration": int(booster.best_iteration or 0)}


def recommend(rows: list[dict]) -> dict:
    """The method with the best mean validation macro-F1 over the gapped levels (ties: lower RMSE)."""
    table = pd.DataFrame(rows)
    gapped = table[table["gap_length"] > 0]
    score = gapped.groupby("method").agg(macro_f1=("macro_f1", "mean"), rmse=("rmse", "mean"))
    score = score.sort_values(["macro_f1", "rmse"], ascending=[False, True])
    return {
        "method": str(score.index[0]),
        "mean_gapped_macro_f1": {m: round(float(v), 4) for m, v in score["macro_f1"].items()},
        "mean_gapped_rmse": {m: (None if pd.isna(v) else round(float(v), 5)) for m, v in score["rmse"].items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--protocol", required=True)
    parser.add_argument("--data", required=True, type=Path, help="split directory (split stage)")
    parser.add_argument("--out", required=True, type=Path, help="directory for the imputed splits")
    parser.add_argument("--metrics", required=True, type=Path)
    parser.add_argument("--plots", type=Path, help="directory for the gap curve CSV")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    setup_logging()
    params = load_params("impute", args.params)
    if params["method"] not in METHODS:
        raise ValueError(f"impute.method must be one of {METHODS}")
    splits = {path.stem: load_beats(path) for path in sorted(args.data.glob("*.parquet"))}
    train = splits["train"]
    knn = KnnBeatImputer(
        k=int(params["knn_k"]), reference_beats=int(params["knn_reference_beats"]), seed=int(params["seed"])
    )
    knn.fit(train[SAMPLE_COLUMNS].to_numpy(), train["length"].to_numpy())
    lost_found = {}
    with atomic_dir(args.out) as out:
        for name, frame in splits.items():
            inside_nan = int(np.isnan(frame[SAMPLE_COLUMNS].to_numpy(dtype=np.float64)).sum())
            lost_found[name] = inside_nan
            impute_frame(frame, params["method"], knn=knn).to_parquet(out / f"{name}.parquet", index=False)
    summary: dict = {"method": params["method"], "lost_samples_found": lost_found}
    if params.get("measure", True):
        train_params = load_params("train", args.params)
        groups = feature_groups(train_params, args.protocol)
        rows, model = measure(train, splits["val"], params, train_params, knn, groups)
        gap_model = {k: params[k] for k in ("dropout_rate", "gaps_per_beat", "gap_lengths")}
        summary.update(
            {
                "measured_on": "val",
                "model": model,
                "gap_model": gap_model,
                "recommendation": recommend(rows),
                "levels": rows,
            }
        )
        if args.plots:
            write_csv(pd.DataFrame(rows), args.plots / "gap_curve.csv")
    write_json(summary, args.metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
