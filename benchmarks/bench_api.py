"""Latency and throughput of the HTTP service on this machine; prints the figures.

    python -m benchmarks.bench_api --model models/kaggle --beats data/processed/kaggle/test.parquet

Starts ``python -m ecgbeats.serving`` (one uvicorn worker) on a free 127.0.0.1 port and measures,
``--repeats`` times (the machine may be shared: the medians over the repeats are reported):

- one-beat latency: ``--single`` sequential ``POST /v1/beats:classify`` requests of one beat each
  over a keep-alive connection, p50 / p99 / mean (after ``--warmup`` requests);
- batched throughput: ``--batches`` requests of ``--batch-size`` beats, sequential (one client)
  and from two client threads (this is a 2-core machine), in beats per second;
- where the time goes, in process, for 1 beat and for a batch: request validation (pydantic, the
  request model of the API), building the beat table, building the model's features, the LightGBM
  prediction, and the prediction observers (counters and the drift window). The client-measured
  latency minus their sum is HTTP, JSON encoding and decoding, and uvicorn.

Every loop is bounded: request counts are fixed and each request has a timeout.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from benchmarks.common import beat_payloads, load_beats, percentile_ms, server
from ecgbeats.modelling.bundle import load_bundle
from ecgbeats.serving.api import request_models
from ecgbeats.serving.monitoring import ServiceMetrics
from ecgbeats.serving.scoring import beat_frame
from ecgbeats.serving.security import hash_key
from ecgbeats.serving.settings import Settings

TIMEOUT = 30.0


def single_latency(base: str, key: str, beats: list[dict], n: int, warmup: int) -> dict[str, float]:
    with httpx.Client(base_url=base, timeout=TIMEOUT, headers={"authorization": f"Bearer {key}"}) as client:
        times = []
        for i in range(warmup + n):
            body = {"beats": [beats[i % len(beats)]]}
            start = time.perf_counter()
            response = client.post("/v1/beats:classify", json=body)
            elapsed = time.perf_counter() - start
            response.raise_for_status()
            if i >= warmup:
                times.append(elapsed)
    return {
        "p50_ms": percentile_ms(times, 50),
        "p99_ms": percentile_ms(times, 99),
        "mean_ms": float(np.mean(times) * 1000),
    }


def batched_throughput(
    base: str, key: str, beats: list[dict], batch_size: int, batches: int, clients: int
) -> dict[str, float]:
    bodies = [
        json.dumps({"beats": [beats[(b * batch_size + j) % len(beats)] for j in range(batch_size)]}).encode()
        for b in range(batches)
    ]

    def run(share: list[bytes]) -> list[float]:
        out = []
        with httpx.Client(
            base_url=base,
            timeout=TIMEOUT,
            headers={"content-type": "application/json", "authorization": f"Bearer {key}"},
        ) as client:
            for body in share:
                start = time.perf_counter()
                client.post("/v1/beats:classify", content=body).raise_for_status()
                out.append(time.perf_counter() - start)
        return out

    run(bodies[:1])  # warm-up
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        latencies = [t for part in pool.map(run, [bodies[i::clients] for i in range(clients)]) for t in part]
    seconds = time.perf_counter() - start
    return {
        "beats_per_s": batch_size * batches / seconds,
        "request_p50_ms": percentile_ms(latencies, 50),
        "body_bytes": float(np.mean([len(b) for b in bodies])),
    }


def time_split(model: Path, beats: list[dict], size: int, rounds: int) -> dict[str, float]:
    """Milliseconds per request in each step of the scoring path, in process (median over rounds)."""
    bundle = load_bundle(model)
    beats_request, _ = request_models(Settings(model_dir=model))
    metrics = ServiceMetrics(bundle.class_names)
    if bundle.reference is not None:
        metrics.enable_drift(bundle.reference, window=2000, min_beats=500)
    steps: dict[str, list[float]] = {k: [] for k in ("validate", "beat_table", "features", "predict", "observe")}
    for r in range(rounds):
        raw = json.dumps({"beats": [beats[(r * size + j) % len(beats)] for j in range(size)]})
        t0 = time.perf_counter()
        body = beats_request.model_validate_json(raw)
        t1 = time.perf_counter()
        samples = np.array([b.samples for b in body.beats], dtype=np.float32)
        lengths = np.array([b.length for b in body.beats], dtype=np.float64)
        rr = {
            c: np.array([getattr(b, c) for b in body.beats], dtype=np.float64)
            for c in ("rr_prev", "rr_next", "rr_local")
        }
        frame = beat_frame(samples, lengths=lengths, rr=rr)
        t2 = time.perf_counter()
        features = bundle.features(frame)
        t3 = time.perf_counter()
        # as Scorer.score_beats does in the service (ECGBEATS_PREDICT_THREADS=1)
        proba = np.asarray(bundle.booster.predict(features.to_numpy(dtype=np.float64), num_threads=1))
        proba = proba.reshape(len(frame), -1)
        t4 = time.perf_counter()
        metrics.observe(features, proba)
        t5 = time.perf_counter()
        for key, (a, b) in zip(steps, [(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5)], strict=True):
            steps[key].append((b - a) * 1000)
    return {k: statistics.median(v[1:] or v) for k, v in steps.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/kaggle"))
    parser.add_argument("--beats", type=Path, default=Path("data/processed/kaggle/test.parquet"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--single", type=int, default=1000, help="one-beat requests per repeat")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=20, help="batched requests per repeat")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)

    beats = beat_payloads(load_beats(args.beats, 5000))
    log = Path(tempfile.mkdtemp(prefix="ecgbeats-bench-")) / "server.log"
    runs = []
    key = secrets.token_urlsafe(32)  # the service as deployed: access control on, one client key
    with server(args.model, log, args.workers, api_keys=hash_key(key)) as (base, _):
        for r in range(args.repeats):
            run = {
                "single": single_latency(base, key, beats, args.single, args.warmup),
                "batch_1_client": batched_throughput(base, key, beats, args.batch_size, args.batches, 1),
                "batch_2_clients": batched_throughput(base, key, beats, args.batch_size, args.batches, 2),
            }
            runs.append(run)
            one = run["single"]
            print(f"repeat {r + 1}: one beat p50 {one['p50_ms']:.2f} ms, p99 {one['p99_ms']:.2f} ms;"
                  f" batched {run['batch_1_client']['beats_per_s']:,.0f} beats/s (1 client), "
                  f"{run['batch_2_clients']['beats_per_s']:,.0f} beats/s (2 clients)", flush=True)  # fmt: skip
    median = {part: {k: statistics.median(run[part][k] for run in runs) for k in runs[0][part]} for part in runs[0]}
    split = {
        "1": time_split(args.model, beats, 1, 300),
        str(args.batch_size): time_split(args.model, beats, args.batch_size, 12),
    }
    print(
        f"\nmodel {args.model}, {args.repeats} repeats (medians), server: {args.workers} uvicorn worker(s) on 127.0.0.1"
    )
    print(f"one-beat latency:  p50 {median['single']['p50_ms']:.2f} ms  p99 {median['single']['p99_ms']:.2f} ms  "
          f"mean {median['single']['mean_ms']:.2f} ms   (goal p99 <= 20 ms)")  # fmt: skip
    for key, label in (("batch_1_client", "1 client"), ("batch_2_clients", "2 clients")):
        m = median[key]
        print(f"batched ({args.batch_size} beats/request, {label}): {m['beats_per_s']:,.0f} beats/s, "
              f"request p50 {m['request_p50_ms']:.0f} ms, body {m['body_bytes'] / 1e6:.1f} MB"
              "   (goal >= 5,000 beats/s)")  # fmt: skip
    print("\nwhere the time goes, in process (ms per request, median):")
    for size, steps in split.items():
        total = sum(steps.values())
        client = (
            median["single"]["p50_ms"]
            if size == "1"
            else args.batch_size / median["batch_1_client"]["beats_per_s"] * 1000
        )
        parts = "  ".join(f"{k} {v:.3f}" for k, v in steps.items())
        print(f"  {size:>5} beat(s): {parts}  | sum {total:.2f}; client-measured {client:.2f} "
              f"(HTTP + JSON + uvicorn ~ {max(client - total, 0):.2f})")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps({"runs": runs, "median": median, "split_ms": split}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
