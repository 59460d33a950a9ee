"""Class imbalance on VALIDATION: class weights vs SMOTE vs augmentation vs augmentation + weights.

    python -m scripts.compare_imbalance --data data/processed --params params.yaml \
        --out metrics/processing/imbalance.json

SMOTE (imbalanced-learn) oversamples in feature space to the same per-class targets as the
augmentation (``augment.target_ratio``, ``max_factor``, ``min_beats``), on the training features
only (missing RR values filled with the training median for SMOTE, which cannot take NaN).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from ecgbeats.aami import CLASS_NAMES
from ecgbeats.augment import AugmentConfig, augment_training, augmentation_plan
from ecgbeats.dataset import load_beats
from ecgbeats.features import build_features
from ecgbeats.io import write_json
from scripts.processing_common import fit_score, summarise
from stages.common import load_params, setup_logging

log = logging.getLogger("scripts.compare_imbalance")


def smote(x, y, config: AugmentConfig, seed: int):
    from imblearn.over_sampling import SMOTE

    plan = augmentation_plan(y, config)
    counts = np.bincount(y, minlength=len(CLASS_NAMES))
    strategy = {i: int(counts[i] + plan[c]) for i, c in enumerate(CLASS_NAMES) if plan[c] > 0}
    filled = x.fillna(x.median())
    sampler = SMOTE(sampling_strategy=strategy, k_neighbors=5, random_state=seed)
    xs, ys = sampler.fit_resample(filled, y)
    return xs, np.asarray(ys)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/processed"))
    parser.add_argument("--protocols", nargs="+", default=["interpatient", "kaggle"])
    parser.add_argument("--groups", nargs="+", default=None, help="feature groups (default: train.features)")
    parser.add_argument("--seeds", type=json.loads, default={"kaggle": [42], "interpatient": [42, 43, 44]})
    parser.add_argument("--num-threads", type=int, default=None)
    parser.add_argument("--variants", nargs="*", help="names of the variants to run (default: all)")
    parser.add_argument("--out", type=Path, default=Path("metrics/processing/imbalance.json"))
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    setup_logging()
    params = load_params("train", args.params)
    if args.num_threads:
        params = {**params, "num_threads": args.num_threads}
    groups = args.groups or list(params["features"])
    config = AugmentConfig.from_params(load_params("augment", args.params))
    previous = json.loads(args.out.read_text())["results"] if args.out.exists() else {}
    result: dict = {p: v for p, v in previous.items() if p not in args.protocols}  # other protocols' runs kept
    for protocol in args.protocols:
        train = load_beats(args.data / protocol / "train.parquet")
        val = load_beats(args.data / protocol / "val.parquet")
        y_train, y_val = train["label"].to_numpy(), val["label"].to_numpy()
        x_train, x_val = build_features(train, groups), build_features(val, groups)
        start = time.perf_counter()
        augmented, summary = augment_training(train, config)
        x_aug, y_aug = build_features(augmented, groups), augmented["label"].to_numpy()
        aug_seconds = time.perf_counter() - start
        start = time.perf_counter()
        need_smote = not args.variants or any(v.startswith("SMOTE") for v in args.variants)
        x_smote, y_smote = smote(x_train, y_train, config, seed=config.seed) if need_smote else (None, None)
        smote_seconds = time.perf_counter() - start
        variants = {
            "class weights none": (x_train, y_train, "none"),
            "class weights sqrt": (x_train, y_train, "sqrt"),
            "class weights balanced": (x_train, y_train, "balanced"),
            "SMOTE": (x_smote, y_smote, "none"),
            "SMOTE + sqrt weights": (x_smote, y_smote, "sqrt"),
            "augmentation": (x_aug, y_aug, "none"),
            "augmentation + sqrt weights": (x_aug, y_aug, "sqrt"),
            "augmentation + balanced weights": (x_aug, y_aug, "balanced"),
        }
        kept = previous.get(protocol, {}).get("variants", {}) if args.variants else {}
        result[protocol] = {
            "groups": groups,
            "augmentation": {**summary, "seconds": round(aug_seconds, 1)},
            "smote_seconds": round(smote_seconds, 1),
            "variants": {k: v for k, v in kept.items() if k not in args.variants},  # earlier runs of other variants
        }
        for name, (x, y, weights) in variants.items():
            if args.variants and name not in args.variants:
                continue
            runs = [fit_score(x, y, x_val, y_val, {**params, "class_weight": weights}, seed=s)
                    for s in args.seeds[protocol]]  # fmt: skip
            result[protocol]["variants"][name] = {"class_weight": weights, "train_beats": len(y), **summarise(runs)}
            result[protocol]["smote_seconds"] = round(smote_seconds, 1)
            log.info("%s %-35s macro-F1 %.4f", protocol, name, result[protocol]["variants"][name]["macro_f1"])
            write_json({"set": "validation", "num_threads": params["num_threads"], "results": result}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
