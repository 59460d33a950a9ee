"""Feature-group ablation on VALIDATION for each protocol: writes metrics/processing/features_ablation.json.

    python -m studies.ablate_features --data data/interim --out metrics/processing/features_ablation.json

Every variant trains with the ``train`` params on the augment stage's training split and is scored on
the validation split (never test or holdout), once per seed of ``ablation.seeds``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ecgbeats.data.dataset import load_beats
from ecgbeats.features.groups import build_features
from ecgbeats.io import write_json
from ecgbeats.modelling.variants import fit_score, summarise
from stages.common import load_params, setup_logging

log = logging.getLogger("studies.ablate_features")

VARIANTS: dict[str, list[str]] = {
    "baseline (samples, length, rr)": ["samples", "length", "rr"],
    "+ rr_norm": ["samples", "length", "rr", "rr_norm"],
    "+ morphology": ["samples", "length", "rr", "morphology"],
    "+ rr_norm + morphology": ["samples", "length", "rr", "rr_norm", "morphology"],
    "downsampled instead of samples, + rr_norm + morphology": ["downsampled", "length", "rr", "rr_norm", "morphology"],
    "no samples: length, rr, rr_norm, morphology": ["length", "rr", "rr_norm", "morphology"],
    "padding as NaN (samples_masked, length, rr)": ["samples_masked", "length", "rr"],
    "padding as NaN, + rr_norm + morphology": ["samples_masked", "length", "rr", "rr_norm", "morphology"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, type=Path, help="directory of <protocol>/augmented/ (augment stage)")
    parser.add_argument("--protocols", nargs="+", default=["interpatient", "kaggle"])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    setup_logging()
    params = load_params("train", args.params)
    seeds = [int(s) for s in load_params("ablation", args.params)["seeds"]]
    result: dict[str, dict] = {}
    for protocol in args.protocols:
        train = load_beats(args.data / protocol / "augmented" / "train.parquet")
        val = load_beats(args.data / protocol / "augmented" / "val.parquet")
        y_train, y_val = train["label"].to_numpy(), val["label"].to_numpy()
        result[protocol] = {}
        for name in VARIANTS:
            groups = VARIANTS[name]
            x_train, x_val = build_features(train, groups), build_features(val, groups)
            runs = [fit_score(x_train, y_train, x_val, y_val, params, seed=s) for s in seeds]
            result[protocol][name] = {"groups": groups, **summarise(runs)}
            log.info("%s %-55s macro-F1 %.4f", protocol, name, result[protocol][name]["macro_f1"])
    write_json(
        {"set": "validation", "class_weight": params["class_weight"], "seeds": seeds, "results": result}, args.out
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
