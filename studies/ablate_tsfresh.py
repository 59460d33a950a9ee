"""tsfresh on VALIDATION: does the frozen selection add to the domain groups, and unpadded vs all 187 samples?

    python -m studies.ablate_tsfresh --data data/interim --out metrics/processing/tsfresh_ablation.json

Reads the features stage's outputs (``<data>/<protocol>/features/``: settings and the cached
features, row for row with ``<data>/<protocol>/augmented/``), keeps the real (non-synthetic)
training beats, and trains with and without the ``tsfresh`` group. ``--padding-protocols`` repeats
the selection and extraction with ``padding=full`` (all 187 samples) for the padding comparison.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from ecgbeats.data.dataset import load_beats
from ecgbeats.data.sampling import balanced_subsample
from ecgbeats.features.groups import build_features, protocol_groups
from ecgbeats.features.tsfresh_features import (
    SETTINGS_FILE,
    TsfreshSettings,
    candidate_parameters,
    extract,
    extract_selected,
    freeze,
    select,
)
from ecgbeats.io import write_json
from ecgbeats.modelling.variants import fit_score, summarise
from stages.common import load_params, setup_logging

log = logging.getLogger("studies.ablate_tsfresh")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--data", required=True, type=Path, help="directory of <protocol>/augmented/ and <protocol>/features/"
    )
    parser.add_argument("--protocols", nargs="+", default=["interpatient", "kaggle"])
    parser.add_argument(
        "--features",
        nargs="*",
        default=[],
        metavar="PROTOCOL=DIR",
        help="a protocol's tsfresh directory when it is not <data>/<protocol>/features",
    )
    parser.add_argument("--padding-protocols", nargs="*", default=["interpatient"])
    parser.add_argument("--domain", nargs="+", default=["samples", "length", "rr", "rr_norm", "morphology"])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    setup_logging()
    params = load_params("train", args.params)
    ts_params = load_params("features", args.params)["tsfresh"]
    seeds = [int(s) for s in load_params("ablation", args.params)["seeds"]]
    features_dirs = {k: Path(v) for k, _, v in (item.partition("=") for item in args.features)}
    result: dict = {}
    for protocol in args.protocols:
        base_groups = [g for g in protocol_groups(params["features"], protocol) if g != "tsfresh"]
        feats = features_dirs.get(protocol, args.data / protocol / "features")
        settings = TsfreshSettings.from_json(feats / SETTINGS_FILE)
        train = load_beats(args.data / protocol / "augmented" / "train.parquet")
        real = ~train["augmented"].to_numpy() if "augmented" in train else slice(None)
        train_cache = pd.read_parquet(feats / "train.parquet")[real].reset_index(drop=True)
        train = train[real].reset_index(drop=True)
        val = load_beats(args.data / protocol / "augmented" / "val.parquet")
        val_cache = pd.read_parquet(feats / "val.parquet")
        y_train, y_val = train["label"].to_numpy(), val["label"].to_numpy()
        variants = {
            f"current groups ({', '.join(base_groups)})": (base_groups, settings, train_cache, val_cache),
            "current groups + tsfresh (unpadded)": ([*base_groups, "tsfresh"], settings, train_cache, val_cache),
            f"domain ({', '.join(args.domain)})": (args.domain, settings, train_cache, val_cache),
            "domain + tsfresh (unpadded)": ([*args.domain, "tsfresh"], settings, train_cache, val_cache),
            "length, rr, rr_norm + tsfresh (unpadded), no samples": (
                ["length", "rr", "rr_norm", "tsfresh"], settings, train_cache, val_cache
            ),
        }  # fmt: skip
        if protocol in args.padding_protocols:
            rows = balanced_subsample(y_train, int(ts_params["subsample"]), int(ts_params["seed"]))
            subsample = train.iloc[rows]
            cand = extract(subsample, candidate_parameters(ts_params["drop_calculators"]), padding="full",
                           n_jobs=int(ts_params["n_jobs"]))  # fmt: skip
            selected, _ = select(cand, subsample["label"].to_numpy(), fdr_level=float(ts_params["fdr_level"]),
                                 top_k=int(ts_params["top_k"]) or None, n_jobs=int(ts_params["n_jobs"]))  # fmt: skip
            full = freeze(selected, "full")
            n_jobs = int(ts_params["n_jobs"])
            full_train, full_val = (extract_selected(f, full, n_jobs=n_jobs) for f in (train, val))
            variants["current groups + tsfresh (all 187 samples)"] = (
                [*base_groups, "tsfresh"],
                full,
                full_train,
                full_val,
            )
            variants["domain + tsfresh (all 187 samples)"] = ([*args.domain, "tsfresh"], full, full_train, full_val)
        result[protocol] = {}
        seen = set()
        for name in variants:
            groups, st, tr_cache, va_cache = variants[name]
            key = (tuple(groups), st.padding if "tsfresh" in groups else None)
            if key in seen:  # the current groups may be one of the fixed variants: fit each set once
                continue
            seen.add(key)
            x_train = build_features(train, groups, tsfresh_settings=st, tsfresh_cache=tr_cache)
            x_val = build_features(val, groups, tsfresh_settings=st, tsfresh_cache=va_cache)
            runs = [fit_score(x_train, y_train, x_val, y_val, params, seed=s) for s in seeds]
            result[protocol][name] = {"groups": groups, "padding": st.padding if "tsfresh" in groups else None,
                                      **summarise(runs)}  # fmt: skip
            log.info("%s %-50s macro-F1 %.4f", protocol, name, result[protocol][name]["macro_f1"])
    write_json({"set": "validation", "seeds": seeds, "results": result}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
