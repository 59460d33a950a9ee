"""Stage impute: fill lost samples inside beats with the chosen method (``impute.method``).

The beats on disk have no lost samples, so the data step leaves them unchanged (a NaN inside a
beat's unpadded part would be filled; the zero padding never is). Which method to choose is the
study ``studies.impute_gaps``: every method under simulated gaps on the validation beats.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from ecgbeats.data.dataset import SAMPLE_COLUMNS, load_beats
from ecgbeats.io import atomic_dir, write_json
from ecgbeats.processing.impute import (
    METHODS,
    KnnBeatImputer,
    impute_frame,
)
from stages.common import load_params, setup_logging

log = logging.getLogger("stages.impute")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, type=Path, help="split directory (split stage)")
    parser.add_argument("--out", required=True, type=Path, help="directory for the imputed splits")
    parser.add_argument("--metrics", required=True, type=Path)
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
    summary = {"method": params["method"], "lost_samples_found": lost_found}
    write_json(summary, args.metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
