"""Stage features: tsfresh selection on the training split, frozen, and extracted for every split.

1. A class-stratified subsample of the training beats (``features.tsfresh.subsample``; synthetic
   beats from the augment stage are left out, so the selection sees real beats only).
2. The candidate set: EfficientFCParameters minus ``features.tsfresh.drop_calculators``.
3. The multiclass relevance table (FDR ``fdr_level``) on that subsample; at most ``top_k`` features,
   ranked by their smallest per-class p-value.
4. Frozen: ``tsfresh_settings.json`` (kind_to_fc_parameters + training column order) and
   ``relevance.csv``; then exactly those features for every split, ``<split>.parquet``, in the
   training column order, row for row with the split file.

With ``compute.engine: dask`` the extraction runs on the cluster: each split is written partitioned
by record under ``compute.shared_dir`` and every worker reads only its records, or, without a shared
directory (or for Kaggle CSV beats, which have no record), beats go through tsfresh's distributor.
The features are identical either way; ``extraction.<split>.path`` in the metrics says which ran.
What the extraction costs is a benchmark, not a metric: ``make bench-tsfresh``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import pandas as pd

from ecgbeats.data.dataset import load_beats
from ecgbeats.data.sampling import balanced_subsample
from ecgbeats.features.tsfresh_features import (
    candidate_parameters,
    extract,
    extract_selected,
    freeze,
    select,
)
from ecgbeats.io import atomic_dir, write_json
from ecgbeats.operations.compute import ComputeConfig, compute_client, extract_selected_partitioned, tsfresh_distributor
from stages.common import load_params, setup_logging

log = logging.getLogger("stages.features")


def extraction_path(client: object, compute: ComputeConfig, beats: pd.DataFrame) -> str:
    """Where a split's features are extracted: local, or on the cluster by record partitions or the distributor."""
    if client is None:
        return "local"
    if compute.shared_dir and "record" in beats and beats["record"].notna().all():
        return "dask, partitioned by record"
    return "dask, tsfresh distributor"  # no shared directory, or Kaggle CSV beats without records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--protocol", required=True)
    parser.add_argument("--data", required=True, type=Path, help="split directory (augment stage)")
    parser.add_argument("--out", required=True, type=Path, help="directory: settings, relevance, features")
    parser.add_argument("--metrics", required=True, type=Path)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    setup_logging()
    params = load_params("features", args.params)["tsfresh"]
    compute = ComputeConfig.from_params(load_params("compute", args.params, optional=True))
    n_jobs = int(params["n_jobs"])
    progress = not bool(params.get("disable_progressbar", True))
    splits = {path.stem: path for path in sorted(args.data.glob("*.parquet"))}
    train = load_beats(splits["train"])
    real = train[~train["augmented"]] if "augmented" in train else train
    rows = balanced_subsample(real["label"].to_numpy(), int(params["subsample"]), int(params["seed"]))
    subsample = real.iloc[rows]
    candidates = candidate_parameters(params["drop_calculators"])
    metrics: dict = {"padding": params["padding"], "subsample_beats": len(subsample),
                     "candidate_calculators": len(candidates)}  # fmt: skip

    with compute_client(compute) as client:  # local: None, nothing started
        distributor = tsfresh_distributor(client) if client is not None else None
        metrics["engine"] = compute.engine
        if client is not None:
            metrics["dask_workers"] = len(client.scheduler_info()["workers"])
        candidates_frame = extract(subsample, candidates, padding=params["padding"], n_jobs=n_jobs, progress=progress,
                                   distributor=distributor)  # fmt: skip
        metrics["candidate_features"] = candidates_frame.shape[1]
        labels = subsample["label"].to_numpy()
        selected, relevance = select(candidates_frame, labels, fdr_level=float(params["fdr_level"]),
                                     top_k=int(params["top_k"]) or None, n_jobs=n_jobs)  # fmt: skip
        metrics["relevant_features"] = int(relevance["relevant"].sum())
        metrics["selected_features"] = len(selected)
        settings = freeze(selected, params["padding"])
        metrics["selected_calculators"] = sorted(settings.kind_to_fc_parameters.get("beat", {}))

        with atomic_dir(args.out) as out:
            settings.to_json(out / "tsfresh_settings.json")
            relevance.drop(columns=["feature"], errors="ignore").to_csv(
                out / "relevance.csv", index_label="feature", float_format="%.6g"
            )
            extraction = {}
            for name, path in splits.items():
                beats = train if name == "train" else load_beats(path)
                where = extraction_path(client, compute, beats)
                started = time.perf_counter()
                if where == "dask, partitioned by record":
                    partitions = Path(compute.shared_dir) / f"{args.protocol}-{name}"
                    features = extract_selected_partitioned(client, beats, settings, partitions)
                else:
                    features = extract_selected(beats, settings, n_jobs=n_jobs, progress=progress,
                                                distributor=distributor)  # fmt: skip
                features.to_parquet(out / f"{name}.parquet", index=False)
                extraction[name] = {"beats": len(beats), "path": where}  # timings: make bench-tsfresh
                log.info("%s %s: %d beats in %.1f s (%s)", args.protocol, name, len(beats),
                         time.perf_counter() - started, where)  # fmt: skip
        metrics["extraction"] = extraction
    write_json(metrics, args.metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
