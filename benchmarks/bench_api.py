"""Latency and throughput of the HTTP service on this machine; prints the figures.

    python -m benchmarks.bench_api --model models/interpatient --beats data/processed/interpatient/test.parquet

Starts ``python -m ecgbeats.serving`` (one uvicorn worker, access control on with one client key) on a
free 127.0.0.1 port and measures, ``--repeats`` times (the machine may be shared: the medians over the
repeats are reported):

- one-beat latency: ``--single`` sequential ``POST /v1/beats:classify`` requests of one beat each as
  JSON over a keep-alive connection, p50 / p99 / mean (after ``--warmup`` requests);
- one-beat throughput: the same requests from two client threads, each on its own connection, in
  requests per second (what one worker serves when it is never idle);
- batched throughput: ``--batches`` requests of ``--batch-size`` beats, as JSON and as
  ``application/x-npy`` (float32, samples + length + RR), sequential (one client) and from two
  client threads (this is a 2-core machine), in beats per second;
- where the time goes, in process, for 1 beat and for a batch: parsing the body into arrays,
  the features, the LightGBM prediction, the prediction observers (counters and the drift window),
  the response encoding; and the whole app (middleware, routing, the steps) called as an ASGI app
  without HTTP. The client-measured latency minus the app is HTTP (h11, loopback) and the client.

Every loop is bounded: request counts are fixed and each request has a timeout. The reference workload
(``benchmarks.common.ReferenceRun``) is measured before and after, and every rate is also printed per reference.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import MutableMapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import psutil

from benchmarks.common import ReferenceRun, beat_payloads, load_beats, percentile_ms, server
from ecgbeats.serving.security import hash_key

# the in-process split imports the service's modules when it runs: with --http-only this benchmark
# measures any version of the service over HTTP (the figures before a change, on the same machine)
TIMEOUT = 30.0
BEATS_PATH = "/v1/beats:classify"
NPY_TYPE = "application/x-npy"
RR = ("rr_prev", "rr_next", "rr_local")


def json_body(beats: list[dict]) -> bytes:
    return json.dumps({"beats": beats}).encode()


def npy_body(beats: list[dict]) -> bytes:
    """The beats as an (n, 191) float32 .npy array: samples, length, rr_prev, rr_next, rr_local."""
    rows = [[*b["samples"], b["length"], *(b.get(c, np.nan) for c in RR)] for b in beats]
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(rows, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


def _client(base: str, key: str, media: str = "application/json") -> httpx.Client:
    return httpx.Client(
        base_url=base, timeout=TIMEOUT, headers={"authorization": f"Bearer {key}", "content-type": media}
    )


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def single_latency(
    base: str, key: str, beats: list[dict], n: int, warmup: int, server_process: psutil.Process
) -> dict[str, float]:
    """One-beat requests one after the other; also the server's CPU time per request (user + system of
    the worker process over the timed requests), whose inverse is what one busy worker can serve."""
    bodies = [json_body([beats[i % len(beats)]]) for i in range(warmup + n)]
    times = []
    with _client(base, key) as client:
        for i, body in enumerate(bodies):
            if i == warmup:
                cpu = cpu_seconds(server_process)
            start = time.perf_counter()
            response = client.post(BEATS_PATH, content=body)
            elapsed = time.perf_counter() - start
            response.raise_for_status()
            if i >= warmup:
                times.append(elapsed)
    server_cpu_ms = (cpu_seconds(server_process) - cpu) / n * 1000
    return {
        "p50_ms": percentile_ms(times, 50),
        "p99_ms": percentile_ms(times, 99),
        "mean_ms": float(np.mean(times) * 1000),
        "requests_per_s": len(times) / sum(times),
        "server_cpu_ms": server_cpu_ms,
        "worker_capacity_per_s": 1000 / server_cpu_ms,
    }


def run_clients(base: str, key: str, bodies: list[bytes], clients: int, media: str) -> tuple[float, list[float]]:
    """Wall seconds for ``clients`` threads to send ``bodies`` between them, and each request's seconds."""

    def run(share: list[bytes]) -> list[float]:
        out = []
        with _client(base, key, media) as client:
            for body in share:
                start = time.perf_counter()
                client.post(BEATS_PATH, content=body).raise_for_status()
                out.append(time.perf_counter() - start)
        return out

    with _client(base, key, media) as client:
        if client.post(BEATS_PATH, content=bodies[0]).status_code == 415:
            return float("nan"), [float("nan")]  # a service without this request type
    run(bodies[:1])  # warm-up
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        latencies = [t for part in pool.map(run, [bodies[i::clients] for i in range(clients)]) for t in part]
    return time.perf_counter() - start, latencies


def single_throughput(base: str, key: str, beats: list[dict], n: int, clients: int) -> dict[str, float]:
    seconds, latencies = run_clients(base, key, [json_body([beats[i % len(beats)]]) for i in range(n)], clients,
                                     "application/json")  # fmt: skip
    return {"requests_per_s": n / seconds, "p99_ms": percentile_ms(latencies, 99)}


def batched_throughput(
    base: str, key: str, beats: list[dict], batch_size: int, batches: int, clients: int, media: str
) -> dict[str, float]:
    encode = npy_body if media == NPY_TYPE else json_body
    bodies = [encode([beats[(b * batch_size + j) % len(beats)] for j in range(batch_size)]) for b in range(batches)]
    seconds, latencies = run_clients(base, key, bodies, clients, media)
    return {
        "beats_per_s": batch_size * batches / seconds,
        "request_p50_ms": percentile_ms(latencies, 50),
        "body_bytes": float(np.mean([len(b) for b in bodies])),
    }


def time_split(model: Path, beats: list[dict], size: int, rounds: int, media: str) -> dict[str, float]:
    """Milliseconds per request in each step of the service's beats path, in process (median over rounds)."""
    from ecgbeats.modelling.bundle import load_bundle
    from ecgbeats.serving.api import beats_response
    from ecgbeats.serving.beat_input import json_beats, npy_beats
    from ecgbeats.serving.monitoring import ServiceMetrics
    from ecgbeats.serving.scoring import Predictions, Scorer, beat_arrays, beat_frame

    bundle = load_bundle(model)
    metrics = ServiceMetrics(bundle.class_names)
    if bundle.reference is not None:
        metrics.enable_drift(bundle.reference, window=2000, min_beats=500)
    scorer = Scorer(bundle, num_threads=1)  # as the service (ECGBEATS_PREDICT_THREADS=1), observers timed apart
    fast = scorer.array_features  # None (e.g. tsfresh features): the scorer's beat-table path is timed
    columns = fast.columns if fast is not None else pd.Index(bundle.feature_columns)
    parse = npy_beats if media == NPY_TYPE else json_beats
    encode = npy_body if media == NPY_TYPE else json_body
    steps: dict[str, list[float]] = {k: [] for k in ("parse", "features", "predict", "observe", "respond")}
    for r in range(rounds):
        raw = encode([beats[(r * size + j) % len(beats)] for j in range(size)])
        t0 = time.perf_counter()
        parsed = parse(raw, 100_000)
        assert parsed is not None
        t1 = time.perf_counter()
        if fast is not None:
            values = fast(*beat_arrays(parsed.samples, lengths=parsed.lengths, rr=parsed.rr))
        else:
            table = beat_frame(parsed.samples, lengths=parsed.lengths, rr=parsed.rr)
            values = bundle.features(table).to_numpy(dtype=np.float32)
        t2 = time.perf_counter()
        proba = np.asarray(bundle.booster.predict(values.astype(np.float64), num_threads=1)).reshape(size, -1)
        t3 = time.perf_counter()
        metrics.observe(pd.DataFrame(values, columns=columns, copy=False), proba)
        t4 = time.perf_counter()
        beats_response(scorer, Predictions(proba, scorer.class_names))
        t5 = time.perf_counter()
        for key, (a, b) in zip(steps, [(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5)], strict=True):
            steps[key].append((b - a) * 1000)
    return {k: statistics.median(v[1:] or v) for k, v in steps.items()}


def app_in_process(model: Path, key: str, body: bytes, rounds: int) -> float:
    """Milliseconds per request of the whole app (middleware, routing, scoring) as an ASGI call, median."""
    from ecgbeats.serving.api import create_app
    from ecgbeats.serving.settings import Settings

    settings = Settings(model_dir=model, api_keys=hash_key(key))
    app = create_app(settings)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"authorization", f"Bearer {key}".encode()), (b"host", b"127.0.0.1")]  # fmt: skip
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": BEATS_PATH, "raw_path": BEATS_PATH.encode(), "query_string": b"", "root_path": "",
        "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip

    async def run() -> list[float]:
        status: list[int] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        times = []
        async with app.router.lifespan_context(app):
            for _ in range(rounds):
                start = time.perf_counter()
                await app(dict(scope), receive, send)
                times.append((time.perf_counter() - start) * 1000)
        assert set(status) == {200}, set(status)
        return times

    return statistics.median(asyncio.run(run())[10:])


def middleware_us(key: str, body: bytes, rounds: int) -> dict[str, float]:
    """Microseconds each of the service's own guards adds per one-beat request around a trivial app."""
    from ecgbeats.serving.api import InputGuard, Lane, ReceivingBudget
    from ecgbeats.serving.monitoring import ServiceMetrics
    from ecgbeats.serving.security import AccessGuard, KeyRing

    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"authorization", f"Bearer {key}".encode())]  # fmt: skip
    scope = {"type": "http", "method": "POST", "path": BEATS_PATH, "headers": headers}
    start_message = {"type": "http.response.start", "status": 200, "headers": []}

    async def trivial(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send(start_message)
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        return None

    async def timed(app: Any) -> float:
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            await app(dict(scope), receive, send)
            times.append(time.perf_counter() - t0)
        return statistics.median(times[10:]) * 1e6

    async def run() -> dict[str, float]:
        keys = KeyRing(enabled=True, client={hash_key(key).removeprefix("sha256:"): "bench"})
        lanes = {BEATS_PATH: Lane(2, 8)}
        guard = InputGuard(trivial, max_body_bytes=32 << 20, body_timeout=60, lanes=lanes, retry_after=1,
                           metrics=ServiceMetrics(list("NSVFQ")), receiving=ReceivingBudget(256 << 20))  # fmt: skip
        bare = await timed(trivial)
        return {
            "AccessGuard": await timed(AccessGuard(trivial, keys=keys, on_refusal=lambda path, reason: None)) - bare,
            "InputGuard": await timed(guard) - bare,
        }

    return asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/interpatient"))
    parser.add_argument("--beats", type=Path, default=Path("data/processed/interpatient/test.parquet"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--single", type=int, default=1000, help="one-beat requests per repeat")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=20, help="batched requests per repeat")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON")
    parser.add_argument("--http-only", action="store_true", help="skip the in-process split (e.g. an older service)")
    args = parser.parse_args(argv)

    beats = beat_payloads(load_beats(args.beats, 5000))
    log = Path(tempfile.mkdtemp(prefix="ecgbeats-bench-")) / "server.log"
    key = secrets.token_urlsafe(32)  # the service as deployed: access control on, one client key
    runs = []
    reference = ReferenceRun()
    with server(args.model, log, args.workers, api_keys=hash_key(key)) as (base, proc):
        # the process serving the requests: uvicorn itself with one worker, else its workers (first one)
        main_process = psutil.Process(proc.pid)
        worker = main_process if args.workers == 1 else main_process.children(recursive=True)[0]
        for r in range(args.repeats):
            run = {
                "single": single_latency(base, key, beats, args.single, args.warmup, worker),
                "single_2_clients": single_throughput(base, key, beats, args.single, 2),
            }
            for media, name in (("application/json", "json"), (NPY_TYPE, "npy")):
                for clients in (1, 2):
                    run[f"batch_{name}_{clients}_client"] = batched_throughput(
                        base, key, beats, args.batch_size, args.batches, clients, media
                    )
            runs.append(run)
            one = run["single"]
            print(f"repeat {r + 1}: one beat p50 {one['p50_ms']:.2f} ms, p99 {one['p99_ms']:.2f} ms, "
                  f"{run['single_2_clients']['requests_per_s']:,.0f} requests/s (2 clients); batched JSON "
                  f"{run['batch_json_1_client']['beats_per_s']:,.0f} beats/s, .npy "
                  f"{run['batch_npy_1_client']['beats_per_s']:,.0f} beats/s (1 client)", flush=True)  # fmt: skip
    median = {part: {k: statistics.median(run[part][k] for run in runs) for k in runs[0][part]} for part in runs[0]}
    split: dict[str, dict[str, float]] = {}
    app_ms = float("nan")
    guards: dict[str, float] = {}
    if not args.http_only:
        split = {
            "1": time_split(args.model, beats, 1, 300, "application/json"),
            f"{args.batch_size} JSON": time_split(args.model, beats, args.batch_size, 12, "application/json"),
            f"{args.batch_size} npy": time_split(args.model, beats, args.batch_size, 12, NPY_TYPE),
        }
        app_ms = app_in_process(args.model, key, json_body(beats[:1]), 1000)
        guards = middleware_us(key, json_body(beats[:1]), 5000)
    reference.finish()

    single = median["single"]
    print(
        f"\nmodel {args.model}, {args.repeats} repeats (medians), server: {args.workers} uvicorn worker(s) on 127.0.0.1"
    )
    print(f"one beat, 1 client:  p50 {single['p50_ms']:.2f} ms  p99 {single['p99_ms']:.2f} ms  mean "
          f"{single['mean_ms']:.2f} ms  = {reference.rate(single['requests_per_s'], 'requests')}"
          "   (goal p99 <= 5 ms)")  # fmt: skip
    print(f"one beat, server CPU {single['server_cpu_ms']:.3f} ms per request: one busy worker serves "
          f"{reference.rate(single['worker_capacity_per_s'], 'requests')}"
          "   (goal >= 1,000 requests/s per worker)")  # fmt: skip
    two = median["single_2_clients"]
    print(f"one beat, 2 client threads (one client process): {reference.rate(two['requests_per_s'], 'requests')}, "
          f"p99 {two['p99_ms']:.2f} ms")  # fmt: skip
    for name, label in (("json", "JSON"), ("npy", ".npy")):
        for clients in (1, 2):
            m = median[f"batch_{name}_{clients}_client"]
            print(f"batched {label} ({args.batch_size} beats/request, {clients} client(s)): "
                  f"{reference.rate(m['beats_per_s'], 'beats')}, request p50 {m['request_p50_ms']:.0f} ms, "
                  f"body {m['body_bytes'] / 1e6:.2f} MB"
                  "   (goal >= 30,000 beats/s)")  # fmt: skip
    if args.http_only:
        print("(--http-only: no in-process split)")
    else:
        print("\nwhere the time goes, in process (ms per request, median):")
    for size, steps in split.items():
        parts = "  ".join(f"{k} {v:.3f}" for k, v in steps.items())
        print(f"  {size:>9} beat(s): {parts}  | sum {sum(steps.values()):.3f}")
    if not args.http_only:
        print(f"  the whole app for one beat (middleware, routing, the steps; ASGI call, no HTTP): {app_ms:.3f} ms;"
              f" client-measured p50 {single['p50_ms']:.2f} ms (HTTP, h11, loopback and the client ~ "
              f"{max(single['p50_ms'] - app_ms, 0):.2f})")  # fmt: skip
        print("  of the app, per request: " + ", ".join(f"{k} {v:.1f} us" for k, v in guards.items()))
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "runs": runs,
                    "median": median,
                    "split_ms": split,
                    "app_ms": app_ms,
                    "guards_us": guards,
                    "reference": reference.as_dict(),
                },
                indent=1,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
