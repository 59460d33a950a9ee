"""Class imbalance on VALIDATION: class weights vs SMOTE vs augmentation vs augmentation + weights.

    python -m studies.compare_imbalance --protocol interpatient --data data/interim/interpatient/imputed \
        --out metrics/processing/imbalance_interpatient.json

Scored on the validation split only, once per seed of ``ablation.seeds``; the input is the impute
stage's output (before the augment stage, which this comparison decides about).

SMOTE (imbalanced-learn) oversamples in feature space to the same per-class targets as the
augmentation (``augment.target_ratio``, ``max_factor``, ``min_beats``), on the training features
only (missing RR values filled with the training median for SMOTE, which cannot take NaN).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from ecgbeats.data.aami import CLASS_NAMES
from ecgbeats.data.dataset import load_beats
from ecgbeats.features.groups import build_features, protocol_groups
from ecgbeats.io import write_json
from ecgbeats.modelling.variants import fit_score, summarise
from ecgbeats.processing.augment import AugmentConfig, augment_training, augmentation_plan
from stages.common import load_params, setup_logging

log = logging.getLogger("studies.compare_imbalance")


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
    parser.add_argument("--protocol", required=True)
    parser.add_argument("--data", required=True, type=Path, help="directory with train/val parquet (impute stage)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    setup_logging()
    params = load_params("train", args.params)
    groups = [
        g for g in protocol_groups(params["features"], args.protocol) if g != "tsfresh"
    ]  # tsfresh: see ablate_tsfresh
    config = AugmentConfig.from_params(load_params("augment", args.params))
    seeds = [int(s) for s in load_params("ablation", args.params)["seeds"]]
    train = load_beats(args.data / "train.parquet")
    val = load_beats(args.data / "val.parquet")
    y_train, y_val = train["label"].to_numpy(), val["label"].to_numpy()
    x_train, x_val = build_features(train, groups), build_features(val, groups)
    augmented, summary = augment_training(train, config)
    x_aug, y_aug = build_features(augmented, groups), augmented["label"].to_numpy()
    x_smote, y_smote = smote(x_train, y_train, config, seed=config.seed)
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
    result = {
        "groups": groups,
        "augmentation": summary,
        "variants": {},
    }
    for name, (x, y, weights) in variants.items():
        runs = [fit_score(x, y, x_val, y_val, {**params, "class_weight": weights}, seed=s)
                for s in seeds]  # fmt: skip
        result["variants"][name] = {"class_weight": weights, "train_beats": len(y), **summarise(runs)}
        log.info("%s %-35s macro-F1 %.4f", args.protocol, name, result["variants"][name]["macro_f1"])
    write_json({"set": "validation", "seeds": seeds, "results": {args.protocol: result}}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
