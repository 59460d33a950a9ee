"""Study impute_gaps: every imputation method under simulated gaps, on the validation beats.

The gap model (``impute.dropout_rate``, ``impute.gaps_per_beat``, ``impute.gap_lengths``) loses samples
inside the validation beats; each method (``impute.methods``) fills them. Measured: reconstruction
error on the lost samples, and macro-F1 / per-class F1 of a model trained on the clean training beats
(``train`` params and the protocol's feature groups but tsfresh) when the validation beats carry imputed
gaps. The product's
``impute.method`` is chosen from this study.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ecgbeats.data.aami import CLASS_NAMES
from ecgbeats.data.dataset import SAMPLE_COLUMNS, load_beats
from ecgbeats.features.groups import build_features, protocol_groups
from ecgbeats.io import write_csv, write_json
from ecgbeats.modelling.variants import fit_variant, score_variant
from ecgbeats.processing.impute import (
    GapModel,
    KnnBeatImputer,
    apply_gaps,
    impute,
    reconstruction_error,
    simulate_gaps,
    unpadded_mask,
)
from stages.common import load_params, setup_logging

log = logging.getLogger("studies.impute_gaps")


def measure(train: pd.DataFrame, val: pd.DataFrame, params: dict, train_params: dict, knn: KnnBeatImputer,
            groups: list[str]) -> tuple[list[dict], dict]:  # fmt: skip
    """Rows of (gap length, method) with reconstruction error and validation F1 scores."""
    seed = int(params["seed"])
    booster = fit_variant(build_features(train, groups), train["label"].to_numpy(), build_features(val, groups),
                          val["label"].to_numpy(), train_params)  # fmt: skip
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
            filled = impute(gapped, lengths, method, knn=knn)
            frame = val.copy()
            frame[SAMPLE_COLUMNS] = filled.astype(np.float32)
            report = score_variant(booster, build_features(frame, groups), y)
            err = reconstruction_error(truth, filled, lost)
            rows.append({
                "gap_length": gap_length,
                "lost_share": round(float(lost.sum() / max(1, unpadded_mask(lengths).sum())), 4),
                "method": method,
                "rmse": round(err["rmse"], 5) if err["samples"] else None,
                "mae": round(err["mae"], 5) if err["samples"] else None,
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
    parser.add_argument("--metrics", required=True, type=Path)
    parser.add_argument("--plots", required=True, type=Path, help="directory for the gap curve CSV")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    setup_logging()
    params = load_params("impute", args.params)
    train_params = load_params("train", args.params)
    # without tsfresh: its extraction on every gapped copy would dominate the study (as compare_imbalance)
    groups = [g for g in protocol_groups(train_params["features"], args.protocol) if g != "tsfresh"]
    train, val = (load_beats(args.data / f"{name}.parquet") for name in ("train", "val"))
    knn = KnnBeatImputer(
        k=int(params["knn_k"]), reference_beats=int(params["knn_reference_beats"]), seed=int(params["seed"])
    )
    knn.fit(train[SAMPLE_COLUMNS].to_numpy(), train["length"].to_numpy())
    rows, model = measure(train, val, params, train_params, knn, groups)
    summary = {
        "measured_on": "val",
        "method_in_use": params["method"],
        "model": model,
        "gap_model": {k: params[k] for k in ("dropout_rate", "gaps_per_beat", "gap_lengths")},
        "recommendation": recommend(rows),
        "levels": rows,
    }
    write_csv(pd.DataFrame(rows), args.plots / "gap_curve.csv")
    write_json(summary, args.metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
