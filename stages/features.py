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
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ecgbeats.compute import ComputeConfig, compute_client, extract_selected_partitioned, tsfresh_distributor
from ecgbeats.dataset import load_beats
from ecgbeats.io import atomic_dir, write_csv, write_json
from ecgbeats.tsfeatures import (
    TsfreshSettings,
    candidate_parameters,
    extract,
    extract_selected,
    freeze,
    select,
    stratified_subsample,
    time_calculators,
)
from stages.common import compute_config, load_params, setup_logging

log = logging.getLogger("stages.features")


def in_process_speed(
    beats: pd.DataFrame, settings: TsfreshSettings, *, singles: int = 30, batch: int = 2000
) -> dict[str, float]:
    """What the selection costs where the service runs it: in-process (``n_jobs=0``), one beat per call
    (median milliseconds) and ``batch`` beats in one call (beats/s)."""
    extract_selected(beats.iloc[:1], settings, n_jobs=0)  # warm-up: tsfresh's first call imports and sets up
    times = []
    for i in range(min(singles, len(beats))):
        start = time.perf_counter()
        extract_selected(beats.iloc[i : i + 1], settings, n_jobs=0)
        times.append(time.perf_counter() - start)
    part = beats.iloc[:batch]
    start = time.perf_counter()
    extract_selected(part, settings, n_jobs=0)
    seconds = time.perf_counter() - start
    return {"one_beat_ms_median": round(1000 * float(np.median(times)), 2),
            "batch_beats": len(part), "batch_beats_per_second": round(len(part) / max(seconds, 1e-9), 1)}  # fmt: skip


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
    parser.add_argument(
        "--timing", type=Path, help="CSV for the per-calculator timing (features.tsfresh.time_calculators_beats)"
    )
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    setup_logging()
    params = load_params("features", args.params)["tsfresh"]
    compute = compute_config(args.params)
    n_jobs = int(params["n_jobs"])
    progress = not bool(params.get("disable_progressbar", True))
    splits = {path.stem: path for path in sorted(args.data.glob("*.parquet"))}
    train = load_beats(splits["train"])
    real = train[~train["augmented"]] if "augmented" in train else train
    rows = stratified_subsample(real["label"].to_numpy(), int(params["subsample"]), int(params["seed"]))
    subsample = real.iloc[rows]
    candidates = candidate_parameters(params["drop_calculators"])
    metrics: dict = {"padding": params["padding"], "subsample_beats": len(subsample),
                     "candidate_calculators": len(candidates)}  # fmt: skip

    timing = None
    if int(params.get("time_calculators_beats", 0)):
        timing = time_calculators(subsample.iloc[: int(params["time_calculators_beats"])],
                                  candidate_parameters(()), padding=params["padding"])  # fmt: skip

    with compute_client(compute) as client:  # local: None, nothing started
        distributor = tsfresh_distributor(client) if client is not None else None
        metrics["engine"] = compute.engine
        if client is not None:
            metrics["dask_workers"] = len(client.scheduler_info()["workers"])
        start = time.perf_counter()
        candidates_frame = extract(subsample, candidates, padding=params["padding"], n_jobs=n_jobs, progress=progress,
                                   distributor=distributor)  # fmt: skip
        metrics["candidate_features"] = candidates_frame.shape[1]
        metrics["candidate_seconds"] = round(time.perf_counter() - start, 1)
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
                start = time.perf_counter()
                if where == "dask, partitioned by record":
                    partitions = Path(compute.shared_dir) / f"{args.protocol}-{name}"
                    features = extract_selected_partitioned(client, beats, settings, partitions)
                else:
                    features = extract_selected(beats, settings, n_jobs=n_jobs, progress=progress,
                                                distributor=distributor)  # fmt: skip
                seconds = time.perf_counter() - start
                features.to_parquet(out / f"{name}.parquet", index=False)
                extraction[name] = {"beats": len(beats), "seconds": round(seconds, 1), "path": where,
                                    "beats_per_second": round(len(beats) / max(seconds, 1e-9), 1)}  # fmt: skip
                log.info("%s %s: %d beats in %.1f s (%s)", args.protocol, name, len(beats), seconds, where)
        metrics["extraction"] = extraction
    metrics["in_process"] = in_process_speed(train, settings)
    metrics["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)  # the machine is shared: context for timings
    metrics["cpu_count"] = os.cpu_count()
    total_beats = sum(v["beats"] for v in extraction.values())
    total_seconds = sum(v["seconds"] for v in extraction.values())
    metrics["extraction_total_seconds"] = round(total_seconds, 1)
    metrics["extraction_beats_per_second"] = round(total_beats / max(total_seconds, 1e-9), 1)
    if timing is not None and args.timing:  # a measurement, kept apart from the data so reruns reproduce the data
        write_csv(timing, args.timing)
    write_json(metrics, args.metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
