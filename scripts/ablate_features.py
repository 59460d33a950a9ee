"""Feature-group ablation on VALIDATION for each protocol: writes metrics/processing/features_ablation.json.

python -m scripts.ablate_features --data data/processed --out metrics/processing/features_ablation.json
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from ecgbeats.dataset import load_beats
from ecgbeats.features import build_features
from ecgbeats.io import write_json
from scripts.processing_common import fit_score, summarise
from stages.common import load_params, setup_logging

log = logging.getLogger("scripts.ablate_features")

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
    parser.add_argument("--data", type=Path, default=Path("data/processed"))
    parser.add_argument("--protocols", nargs="+", default=["interpatient", "kaggle"])
    parser.add_argument("--variants", nargs="*", type=int, help="indices into VARIANTS (default: all)")
    parser.add_argument("--num-threads", type=int, default=None, help="override train.num_threads")
    parser.add_argument("--seeds", type=json.loads, default={"kaggle": [42], "interpatient": [42, 43, 44]})
    parser.add_argument("--out", type=Path, default=Path("metrics/processing/features_ablation.json"))
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    setup_logging()
    params = load_params("train", args.params)
    if args.num_threads:
        params = {**params, "num_threads": args.num_threads}
    previous = json.loads(args.out.read_text())["results"] if args.out.exists() else {}
    result: dict[str, dict] = {p: v for p, v in previous.items() if p not in args.protocols}
    for protocol in args.protocols:
        train = load_beats(args.data / protocol / "train.parquet")
        val = load_beats(args.data / protocol / "val.parquet")
        y_train, y_val = train["label"].to_numpy(), val["label"].to_numpy()
        result[protocol] = {}
        chosen = [list(VARIANTS)[i] for i in args.variants] if args.variants else list(VARIANTS)
        for name in chosen:
            groups = VARIANTS[name]
            start = time.perf_counter()
            x_train, x_val = build_features(train, groups), build_features(val, groups)
            build_seconds = time.perf_counter() - start
            runs = [fit_score(x_train, y_train, x_val, y_val, params, seed=s) for s in args.seeds[protocol]]
            result[protocol][name] = {"groups": groups, **summarise(runs), "feature_seconds": round(build_seconds, 2)}
            log.info("%s %-55s macro-F1 %.4f", protocol, name, result[protocol][name]["macro_f1"])
            write_json({"set": "validation", "class_weight": params["class_weight"],
                        "num_threads": params["num_threads"], "results": result}, args.out)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
