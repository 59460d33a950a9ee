"""Turn `dvc exp show --csv` into reports/tuning.csv: one row per experiment, ranked by the mean of
the two protocols' validation macro-F1 (test and holdout sets play no part in the ranking).

    dvc exp show --csv > /tmp/exps.csv && python scripts/tuning_table.py /tmp/exps.csv reports/tuning.csv
"""

from __future__ import annotations

import argparse

import pandas as pd

from ecgbeats.data.splits import PROTOCOLS
from ecgbeats.io import write_csv

PARAMS = ["class_weight", "num_leaves", "min_child_samples", "learning_rate", "feature_fraction"]


def tuning_table(exps: pd.DataFrame) -> pd.DataFrame:
    runs = exps[exps["Experiment"].notna()]
    table = pd.DataFrame({"experiment": runs["Experiment"]})
    for name in PARAMS:
        column = f"train.{name}"
        if column in runs and runs[column].nunique() > 1:
            table[name] = runs[column]
    for protocol in PROTOCOLS:
        prefix = f"metrics/{protocol}/train.json:"
        table[f"{protocol}_best_iteration"] = pd.to_numeric(runs[prefix + "best_iteration"], errors="coerce")
        table[f"{protocol}_val_macro_f1"] = pd.to_numeric(runs[prefix + "val_macro_f1"], errors="coerce")
    table["mean_val_macro_f1"] = table[[f"{p}_val_macro_f1" for p in PROTOCOLS]].mean(axis=1).round(6)
    return table.sort_values("mean_val_macro_f1", ascending=False).reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("exps", help="CSV written by `dvc exp show --csv`")
    parser.add_argument("out", help="tuning table CSV")
    args = parser.parse_args()
    write_csv(tuning_table(pd.read_csv(args.exps)), args.out)


if __name__ == "__main__":
    main()
