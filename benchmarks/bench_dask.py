"""tsfresh extraction (and optionally LightGBM training) in process versus on a Dask LocalCluster; prints the figures.

    python -m benchmarks.bench_dask --settings data/interim/interpatient/features/tsfresh_settings.json \\
        --beats 'data/processed/interpatient/*.parquet' --n 6000 --train-beats 20000 --rounds 100

``--n`` random beats of the ``--beats`` tables (a glob), the frozen selection of ``--settings``
(``TsfreshSettings``), each measured ``--repeats`` times (the machine may be shared: the median
is reported, with the 1-minute load average before and after):

- ``local n_jobs=0``: tsfresh in this process, one core (the per-core figure for capacity plans);
- ``local n_jobs=N``: tsfresh's multiprocessing pool of ``--workers`` processes (the stage's path);
- ``dask distributor``: a ``LocalCluster`` of ``--workers`` worker processes x 1 thread, through
  tsfresh's Dask distributor (``ecgbeats.operations.compute.tsfresh_distributor``): the client ships the data;
- ``dask partitioned``: the same cluster, the beats written partitioned by record
  (``write_partitioned``) and each worker reading and extracting its records
  (``partitioned_features``), the whole result gathered to the client;
- ``dask stage path``: what the features stage runs with ``compute.shared_dir``
  (``extract_selected_partitioned``): writing the partitions, extracting, and restoring the row order.

The cluster is started and warmed up (tsfresh imported in the workers) before any timing; the
cluster's features are checked to equal the local ones. With ``--train-beats``, LightGBM on the
``samples, length, rr`` features of that many beats for ``--rounds`` fixed rounds (no early
stopping), ``lgb.train`` with ``--workers`` threads versus ``lightgbm.dask`` on the cluster (fit only).
The reference workload (``benchmarks.common.ReferenceRun``) is measured before and after, and every rate is
printed per reference at the end.
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from benchmarks.common import ReferenceRun
from ecgbeats.data.dataset import write_partitioned
from ecgbeats.features.groups import build_features
from ecgbeats.features.tsfresh_features import TsfreshSettings, extract_selected
from ecgbeats.modelling.model import lightgbm_params, sample_weights
from ecgbeats.operations.compute import (
    ComputeConfig,
    compute_client,
    dask_lightgbm_params,
    extract_selected_partitioned,
    partitioned_features,
)
from ecgbeats.operations.compute import tsfresh_distributor as dask_distributor

TRAIN_PARAMS = {"class_weight": "balanced", "learning_rate": 0.1, "num_leaves": 31, "max_depth": -1,
                "min_child_samples": 100, "feature_fraction": 0.5, "bagging_fraction": 0.8, "bagging_freq": 1,
                "lambda_l1": 0.0, "lambda_l2": 1.0}  # fmt: skip  # params.yaml's train section, as committed


def sample_beats(pattern: str, n: int, seed: int = 0) -> pd.DataFrame:
    paths = sorted(glob.glob(pattern))
    if not paths:
        raise SystemExit(f"no beat table matches {pattern}")
    frame = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    pick = np.sort(np.random.default_rng(seed).choice(len(frame), size=min(n, len(frame)), replace=False))
    return frame.iloc[pick].reset_index(drop=True)


def timed(label: str, run: Callable[[], object], beats: int, repeats: int) -> tuple[dict[str, float], object]:
    seconds, result = [], None
    load_before = os.getloadavg()[0]
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    figures = {"seconds": median, "beats_per_s": beats / median, "load_before": load_before,
               "load_after": os.getloadavg()[0]}  # fmt: skip
    print(f"  {label:<28} {figures['beats_per_s']:8,.0f} beats/s  ({median:6.1f} s; runs "
          f"{', '.join(f'{s:.1f}' for s in seconds)} s; load {load_before:.1f} -> {figures['load_after']:.1f})",
          flush=True)  # fmt: skip
    return figures, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--settings", type=Path, default=Path("data/interim/interpatient/features/tsfresh_settings.json")
    )
    parser.add_argument("--beats", default="data/processed/interpatient/*.parquet", help="glob of beat tables")
    parser.add_argument("--n", type=int, default=6000, help="beats to extract")
    parser.add_argument("--workers", type=int, default=2, help="local processes and Dask workers (1 thread each)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--skip-single-core", action="store_true", help="skip the n_jobs=0 run")
    parser.add_argument("--train-beats", type=int, default=0, help="also time training on this many beats")
    parser.add_argument("--rounds", type=int, default=100, help="boosting rounds of the training runs")
    args = parser.parse_args(argv)

    from distributed import LocalCluster

    settings = TsfreshSettings.from_json(args.settings)
    beats = sample_beats(args.beats, args.n)
    n = len(beats)
    print(f"{n} beats of {args.beats}; {len(settings.columns)} tsfresh features ({args.settings}); "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    reference = ReferenceRun()
    results: dict[str, dict[str, float]] = {}
    if not args.skip_single_core:
        results["local_1"], _ = timed(
            "local n_jobs=0 (1 core)", lambda: extract_selected(beats, settings), n, args.repeats
        )
    results["local_n"], local = timed(
        f"local n_jobs={args.workers}", lambda: extract_selected(beats, settings, n_jobs=args.workers), n, args.repeats
    )
    with (
        LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster,  # fmt: skip
        compute_client(ComputeConfig("dask", cluster.scheduler_address, connect_timeout=30)) as client,
        tempfile.TemporaryDirectory(prefix="ecgbeats-bench-dask-") as tmp,
    ):
        distributor = dask_distributor(client)
        extract_selected(beats.iloc[:200], settings, distributor=distributor)  # warm-up: tsfresh in the workers
        results["dask_distributor"], on_cluster = timed(
            f"dask distributor {args.workers}x1", lambda: extract_selected(beats, settings, distributor=distributor),
            n, args.repeats,
        )  # fmt: skip
        pd.testing.assert_frame_equal(on_cluster, local, check_exact=True)
        # one copy per repeat: the same directory would give the same task keys, and the cluster
        # could hand back the previous repeat's result instead of computing it again
        records = [write_partitioned(beats, Path(tmp) / f"beats{i}") for i in range(args.repeats)][0]
        copies = [partitioned_features(Path(tmp) / f"beats{i}", settings) for i in range(args.repeats)]

        def partitioned() -> pd.DataFrame:
            return client.compute(copies.pop(0)).result()

        results["dask_partitioned"], by_record = timed(
            f"dask partitioned {args.workers}x1 ({len(records)} records)", partitioned, n, args.repeats
        )
        keys = ["record", "beat_index"]
        expected = pd.concat([beats[keys], local], axis=1).sort_values(keys, ignore_index=True)
        got = by_record.sort_values(keys, ignore_index=True)
        pd.testing.assert_frame_equal(got[settings.columns], expected[settings.columns], check_exact=True)
        runs = iter(range(args.repeats))  # a new directory per repeat, for the same reason

        def stage_path() -> pd.DataFrame:
            return extract_selected_partitioned(client, beats, settings, Path(tmp) / f"stage{next(runs)}")

        results["dask_stage"], staged = timed(
            f"dask stage path {args.workers}x1 (write + read)", stage_path, n, args.repeats
        )
        pd.testing.assert_frame_equal(staged, local, check_exact=True)
        print(f"  features identical to local on both cluster paths; beats/s relative to local n_jobs={args.workers}: "
              + ", ".join(f"{k} {v['beats_per_s'] / results['local_n']['beats_per_s']:.2f}x"
                          for k, v in results.items()), flush=True)  # fmt: skip
        if args.train_beats:
            results |= train_timing(client, args)
    reference.finish()
    for label, figures in results.items():
        print(f"  {label:<16} {reference.rate(figures['beats_per_s'], 'beats')}")
    return 0


def train_timing(client, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    from lightgbm.dask import DaskLGBMClassifier

    beats = sample_beats(args.beats, args.train_beats, seed=1)
    x = build_features(beats, ["samples", "length", "rr"])
    y = beats["label"].to_numpy(dtype=np.int64)
    weights = sample_weights(y, TRAIN_PARAMS["class_weight"])
    print(f"\ntraining: {len(x)} beats x {x.shape[1]} features, {args.rounds} rounds, classes "
          f"{np.bincount(y, minlength=5).tolist()}", flush=True)  # fmt: skip

    def local(threads: int) -> None:
        params = lightgbm_params({**TRAIN_PARAMS, "num_threads": threads}, seed=42)
        lgb.train(params, lgb.Dataset(x, label=y, weight=weights), num_boost_round=args.rounds)

    def on_cluster() -> None:
        import dask.dataframe as dd

        frame = pd.concat([x, pd.Series(y, name="y"), pd.Series(weights, name="w")], axis=1)
        parts = dd.from_pandas(frame, npartitions=args.workers, sort=True).persist()
        model = DaskLGBMClassifier(client=client, n_estimators=args.rounds, **dask_lightgbm_params(TRAIN_PARAMS, 42))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
            warnings.filterwarnings("ignore", message="Sending large graph")
            model.fit(parts.drop(columns=["y", "w"]), parts["y"], sample_weight=parts["w"])

    return {
        "train_1": timed("lgb.train num_threads=1", lambda: local(1), len(x), args.repeats)[0],
        "train_n": timed(f"lgb.train num_threads={args.workers}", lambda: local(args.workers), len(x), args.repeats)[0],
        "train_dask": timed(f"lightgbm.dask {args.workers}x1", on_cluster, len(x), args.repeats)[0],
    }


if __name__ == "__main__":
    sys.exit(main())
