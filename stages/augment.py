"""Stage augment: class-aware synthetic beats added to the TRAINING split only; other splits copied as they are."""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

import numpy as np

from ecgbeats.data.aami import CLASS_NAMES
from ecgbeats.data.dataset import load_beats
from ecgbeats.io import atomic_dir, write_json
from ecgbeats.processing.augment import AugmentConfig, augment_training
from stages.common import load_params, setup_logging

log = logging.getLogger("stages.augment")
TRAINING_SPLIT = "train"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, type=Path, help="directory of split parquet files")
    parser.add_argument("--out", required=True, type=Path, help="directory to write (same files)")
    parser.add_argument("--metrics", required=True, type=Path)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    setup_logging()
    params = load_params("augment", args.params)
    train = load_beats(args.data / f"{TRAINING_SPLIT}.parquet")
    if params.get("enabled", True):
        config = AugmentConfig.from_params(params)
        augmented, summary = augment_training(train, config)
    else:
        augmented = train.assign(augmented=False, augment_transforms="", augment_source=-1)
        counts = np.bincount(train["label"].to_numpy(), minlength=len(CLASS_NAMES))
        summary = {"added": {c: 0 for c in CLASS_NAMES}, "after": dict(zip(CLASS_NAMES, counts.tolist(), strict=True))}
    summary = {"enabled": bool(params.get("enabled", True)), "train_beats": len(train),
               "augmented_beats": len(augmented), **summary}  # fmt: skip
    with atomic_dir(args.out) as out:
        augmented.to_parquet(out / f"{TRAINING_SPLIT}.parquet", index=False)
        for path in sorted(args.data.glob("*.parquet")):
            if path.stem != TRAINING_SPLIT:  # validation, test and holdout are never augmented
                shutil.copyfile(path, out / path.name)
    write_json(summary, args.metrics)
    log.info("train: %d -> %d beats (%s)", len(train), len(augmented), summary.get("added"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
