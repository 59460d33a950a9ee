"""Stage split: one protocol's sets (kaggle or interpatient) as parquet files, with their counts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ecgbeats.data.dataset import class_counts, load_beats
from ecgbeats.data.splits import (
    EXCLUDED,
    INTERPATIENT_SETS,
    PROTOCOLS,
    SplitError,
    interpatient_split,
    kaggle_split,
)
from ecgbeats.io import atomic_dir, write_json
from stages.common import load_params, setup_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--protocol", required=True, choices=PROTOCOLS)
    parser.add_argument("--beats", required=True, help="beat table parquet (ingest stage)")
    parser.add_argument("--out", required=True, help="directory for <set>.parquet files")
    parser.add_argument("--metrics", required=True, help="metrics JSON with sizes and class counts")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    setup_logging()
    params = load_params("split", args.params)
    protocol = params[args.protocol]
    beats = load_beats(args.beats)
    labels = beats["label"].to_numpy()
    extra: dict[str, object] = {}
    try:
        if args.protocol == "kaggle":
            published = beats["kaggle_split"]
            sets = kaggle_split(
                labels,
                test_size=protocol["test_size"],
                val_size=protocol["val_size"],
                seed=int(params["seed"]),
                published_test=(published == "test").to_numpy() if published.notna().all() else None,
            )
        else:
            sets, val_records = interpatient_split(
                beats["record"].to_numpy(dtype=object, na_value=None),
                labels,
                val_records=int(protocol["val_records"]),
                test_size=protocol["test_size"],
                seed=int(params["seed"]),
                required_val_classes=protocol["required_val_classes"],
                min_class_beats=int(protocol["min_class_beats"]),
            )
            extra["val_records"] = val_records
    except SplitError as err:
        print(f"split {args.protocol} failed: {err}", file=sys.stderr)
        return 1

    metrics: dict[str, object] = {"protocol": args.protocol, "sets": {}}
    with atomic_dir(args.out) as tmp:
        for name in [s for s in INTERPATIENT_SETS if s in set(sets)]:
            part = beats[sets == name].reset_index(drop=True)
            part.to_parquet(Path(tmp) / f"{name}.parquet", index=False)
            metrics["sets"][name] = {
                "beats": len(part),
                "records": int(part["record"].nunique()),
                "classes": class_counts(part["label"]),
            }
    metrics["excluded_beats"] = int(np.sum(sets == EXCLUDED))
    metrics.update(extra)
    write_json(metrics, args.metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
