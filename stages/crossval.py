"""Stage crossval: the record model cross-validated over the DS1 patients (record-disjoint folds).

Every DS1 beat is predicted by a model that never saw its record; the pooled figures and their spread
over folds are what every interpatient choice is made on (``dvc exp run -S record.model...`` then
``dvc metrics diff``). The median best iteration over the folds is the round count of the final fits,
and the rhythm rules (``ecgbeats.modelling.rhythm_rules``) of ``record.rules`` with the best pooled
macro-F1 on the out-of-fold predictions are the ones the bundle carries; ``pooled`` is with them,
``model_only`` without.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ecgbeats.data.aami import CLASS_NAMES
from ecgbeats.features.record import feature_columns, model_config
from ecgbeats.io import write_csv, write_json
from ecgbeats.modelling.crossval import cross_validate, patient_folds
from ecgbeats.modelling.evaluation import evaluate_predictions, per_record_figures
from ecgbeats.modelling.rhythm_rules import choose_rules, rule_grid
from stages.common import load_params, setup_logging

log = logging.getLogger("stages.crossval")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, type=Path, help="DS1 record beats (record_beats stage)")
    parser.add_argument("--metrics", required=True, type=Path, help="cross-validation metrics JSON")
    parser.add_argument("--plots", required=True, type=Path, help="directory for folds.csv and confusion.csv")
    parser.add_argument(
        "--model-key", default="model", help="the record.<key> block of the model (groups, leads, lightgbm)"
    )
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    setup_logging()
    record = load_params("record", args.params)
    train = load_params("train", args.params)
    params = {**train, **record[args.model_key]["lightgbm"]}
    config = model_config(record, args.model_key)
    columns = feature_columns(config)
    beats = pd.read_parquet(args.data)
    y = beats["label"].to_numpy(dtype=np.int64)
    folds = patient_folds(beats["record"].to_numpy(), y, int(record["cv"]["folds"]), int(record["cv"]["seed"]))
    log.info("%d DS1 beats, %d records, %d features, %d folds", len(beats), beats["record"].nunique(),
             len(columns), folds.max() + 1)  # fmt: skip
    result = cross_validate(beats[columns], y, folds, params, seed=int(train["seed"]))
    model_only = evaluate_predictions(y, result["oof"], n_boot=0)
    grid = rule_grid(record["rules"]) if "reference" in config.groups else rule_grid({})
    rules, candidates = choose_rules(y, result["oof"], beats, grid, config.reference)
    proba = rules.apply(result["oof"], beats, config.reference)
    pooled = evaluate_predictions(y, proba, n_boot=0)
    predicted = proba.argmax(axis=1)
    fold_records = {str(k): sorted(beats.loc[folds == k, "record"].unique().tolist()) for k in range(folds.max() + 1)}
    write_json(
        {
            "beats": len(beats),
            "features": len(columns),
            "folds": fold_records,
            "pooled": {k: v for k, v in pooled.items() if k != "per_class"},
            "per_class": pooled["per_class"],
            "model_only": {k: v for k, v in model_only.items() if k != "per_class"},
            "rhythm_rules": rules.to_dict(),
            "spread": result["summary"],
            "per_fold": result["folds"],
            "per_record": per_record_figures(beats["record"].to_numpy(), y, predicted),
        },
        args.metrics,
    )
    write_csv(pd.DataFrame(result["folds"]), args.plots / "folds.csv")
    write_csv(pd.DataFrame(candidates), args.plots / "rules.csv")
    names = np.array(CLASS_NAMES)
    write_csv(pd.DataFrame({"actual": names[y], "predicted": names[predicted]}), args.plots / "confusion.csv")
    log.info("rhythm rules %s: macro-F1 NSVF %.4f -> %.4f", rules.to_dict(), model_only["macro_f1_nsvf"],
             pooled["macro_f1_nsvf"])  # fmt: skip
    log.info("pooled out-of-fold: accuracy %.4f, macro-F1 NSVF %.4f", pooled["accuracy"], pooled["macro_f1_nsvf"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
