"""A bounded load test of the service on loopback, and a restart during load; prints what clients saw.

    python -m benchmarks.load_test --model models/kaggle --beats data/processed/kaggle/test.parquet

1. **steady load**: ``--requests`` (10,000) one-beat ``POST /v1/beats:classify`` requests from
   ``--concurrency`` (32) concurrent httpx async clients sharing one connection pool. Every response
   must be 200 and carry the expected class for its beat (checked against an in-process score of the
   same beat: responses are never mixed up under concurrency). The server's resident memory (RSS,
   psutil) is sampled every ``--sample-every`` seconds; memory growth is judged on the second half
   of the run (after warm-up), by a least-squares slope and the change from the middle to the end.
2. **restart during load**: the same load (``--restart-requests``) while the server is stopped
   with SIGTERM after a third of the requests and a new one started on the same port (a rolling
   restart of one replica with nothing in front of it). Each request records its first-attempt
   outcome (what a client without retries sees) and its final outcome with up to ``--retries``
   retries on connection errors and 503 (safe: scoring is a pure function of the request, the
   service keeps no per-request state, and every response names the model version and digest).

All traffic is on 127.0.0.1; request counts are fixed and each request has a timeout; the whole run
has a deadline (``--deadline`` seconds per scenario). The reference workload (``benchmarks.common.ReferenceRun``)
is measured before and after the steady load, and its requests per second is also printed per reference.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

from benchmarks.common import (
    ReferenceRun,
    beat_payloads,
    free_port,
    load_beats,
    percentile_ms,
    start_server,
    stop_server,
)
from ecgbeats.modelling.bundle import load_bundle
from ecgbeats.serving.scoring import Scorer, frame_to_beats

TIMEOUT = 30.0
MAX_ERRORS_KEPT = 20


class RssSampler(threading.Thread):
    """Samples the RSS of one process every ``every`` seconds until stopped (or the process ends)."""

    def __init__(self, pid: int, every: float) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.every = every
        self.samples: list[tuple[float, float]] = []  # (seconds since start, MiB)
        self._stop_event = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        while not self._stop_event.is_set():
            try:
                self.samples.append((time.monotonic() - start, self.process.memory_info().rss / 2**20))
            except psutil.Error:
                return
            self._stop_event.wait(self.every)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


async def run_load(
    base: str,
    beats: list[dict],
    expected: np.ndarray,
    n: int,
    concurrency: int,
    retries: int,
    deadline: float,
    on_progress=None,  # noqa: ANN001 (called with the number of requests done)
) -> dict[str, object]:
    """``n`` one-beat requests at ``concurrency``; first-attempt and final outcomes, latencies."""
    first: collections.Counter[str] = collections.Counter()
    final: collections.Counter[str] = collections.Counter()
    wrong = 0
    latencies: list[float] = []
    versions: collections.Counter[str] = collections.Counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    done = 0
    errors: list[str] = []
    start_all = time.perf_counter()
    stop_at = time.monotonic() + deadline
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done, wrong
        while time.monotonic() < stop_at:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            k = i % len(beats)
            outcome = "unsent"
            for attempt in range(retries + 1):
                start = time.perf_counter()
                try:
                    response = await client.post("/v1/beats:classify", json={"beats": [beats[k]]})
                    outcome = str(response.status_code)
                except httpx.TransportError as err:
                    outcome = type(err).__name__
                    response = None
                    if len(errors) < MAX_ERRORS_KEPT:
                        errors.append(f"{time.perf_counter() - start_all:.2f}s request {i}: {outcome}: {err!r}")
                if attempt == 0:
                    first[outcome] += 1
                if response is not None and response.status_code == 200:
                    latencies.append(time.perf_counter() - start)
                    body = response.json()
                    versions[body["model"]["digest"][:12]] += 1
                    if body["predictions"][0]["class_code"] != expected[k]:
                        wrong += 1
                    break
                if response is not None and response.status_code not in (502, 503, 504):
                    break  # a 4xx or 500 is not retried: it would fail again
                if attempt < retries:
                    await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
            final[outcome] += 1
            done += 1
            if on_progress is not None:
                on_progress(done)

    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    seconds = time.perf_counter() - start
    return {
        "requests": n,
        "completed": done,
        "seconds": seconds,
        "requests_per_s": done / seconds,
        "first_attempt": dict(first),
        "final": dict(final),
        "wrong_class": wrong,
        "latency_p50_ms": percentile_ms(latencies, 50) if latencies else None,
        "latency_p99_ms": percentile_ms(latencies, 99) if latencies else None,
        "model_digests": dict(versions),
        "transport_errors": errors,
    }


def rss_summary(samples: list[tuple[float, float]]) -> dict[str, float]:
    t = np.array([s[0] for s in samples])
    mib = np.array([s[1] for s in samples])
    half = len(mib) // 2
    slope = float(np.polyfit(t[half:], mib[half:], 1)[0]) if len(mib) - half >= 3 else float("nan")
    return {
        "samples": len(mib),
        "start_mib": float(mib[0]),
        "middle_mib": float(mib[half]),
        "end_mib": float(mib[-1]),
        "max_mib": float(mib.max()),
        "second_half_slope_mib_per_min": slope * 60,
    }


def expected_classes(model: Path, frame) -> np.ndarray:  # noqa: ANN001
    return Scorer(load_bundle(model)).score_beats(frame_to_beats(frame)).codes


def steady(args: argparse.Namespace, beats: list[dict], expected: np.ndarray, log: Path) -> dict[str, object]:
    port = free_port()
    proc = start_server(args.model, port, log, keep_alive=args.keep_alive)
    sampler = RssSampler(proc.pid, args.sample_every)
    sampler.start()
    try:
        result = asyncio.run(
            run_load(f"http://127.0.0.1:{port}", beats, expected, args.requests, args.concurrency, 0, args.deadline)
        )
    finally:
        time.sleep(args.sample_every * 2)
        sampler.stop()
        stop_server(proc)
    result["rss"] = rss_summary(sampler.samples)
    result["rss_trace"] = [(round(t, 2), round(m, 1)) for t, m in sampler.samples]
    return result


def restart(args: argparse.Namespace, beats: list[dict], expected: np.ndarray, log: Path) -> dict[str, object]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    procs = [start_server(args.model, port, log, keep_alive=args.keep_alive)]
    trigger = args.restart_requests // 3
    events: dict[str, float] = {}
    started = threading.Event()

    def restart_server() -> None:
        events["sigterm"] = time.monotonic()
        stop_server(procs[0])
        events["old_exited"] = time.monotonic()
        procs.append(start_server(args.model, port, log, keep_alive=args.keep_alive))
        events["new_ready"] = time.monotonic()

    def on_progress(done: int) -> None:
        if done == trigger and not started.is_set():
            started.set()
            threading.Thread(target=restart_server, daemon=True).start()

    t0 = time.monotonic()
    try:
        result = asyncio.run(
            run_load(
                base, beats, expected, args.restart_requests, args.concurrency, args.retries, args.deadline, on_progress
            )  # fmt: skip
        )
        deadline = time.monotonic() + 90
        while "new_ready" not in events and time.monotonic() < deadline:  # the restart may outlast the load
            time.sleep(0.2)
    finally:
        for proc in procs:
            stop_server(proc)
    result["restart"] = {
        "sigterm_after_s": round(events.get("sigterm", t0) - t0, 2),
        "old_server_drained_s": round(events.get("old_exited", np.nan) - events.get("sigterm", np.nan), 2),
        "unavailable_s": round(events.get("new_ready", np.nan) - events.get("sigterm", np.nan), 2),
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/kaggle"))
    parser.add_argument("--beats", type=Path, default=Path("data/processed/kaggle/test.parquet"))
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--sample-every", type=float, default=0.5)
    parser.add_argument("--restart-requests", type=int, default=3000)
    parser.add_argument("--retries", type=int, default=8, help="retries on connection errors and 503 (restart run)")
    parser.add_argument("--deadline", type=float, default=600.0, help="seconds per scenario at most")
    parser.add_argument("--skip-restart", action="store_true")
    parser.add_argument(
        "--keep-alive", type=int, help="serve with uvicorn --timeout-keep-alive SECONDS (default: 5 s, uvicorn's)"
    )
    parser.add_argument("--out", type=Path, help="also write the results as JSON")
    args = parser.parse_args(argv)

    frame = load_beats(args.beats, 2000, seed=1)
    beats = beat_payloads(frame)
    expected = expected_classes(args.model, frame)
    log = Path(tempfile.mkdtemp(prefix="ecgbeats-load-")) / "server.log"
    reference = ReferenceRun()
    results = {"steady": steady(args, beats, expected, log)}
    reference.finish()
    results["reference"] = reference.as_dict()
    s = results["steady"]
    rss = s["rss"]
    print(f"steady: {s['completed']}/{s['requests']} requests at concurrency {args.concurrency} in "
          f"{s['seconds']:.1f} s, {reference.rate(s['requests_per_s'], 'requests')}; outcomes {s['final']}; "
          f"wrong class {s['wrong_class']}; latency p50 {s['latency_p50_ms']:.1f} ms "
          f"p99 {s['latency_p99_ms']:.1f} ms")  # fmt: skip
    for line in s["transport_errors"]:
        print(f"  transport error: {line}")
    print(f"server RSS MiB: start {rss['start_mib']:.1f}, middle {rss['middle_mib']:.1f}, end {rss['end_mib']:.1f}, "
          f"max {rss['max_mib']:.1f}; second-half slope {rss['second_half_slope_mib_per_min']:+.2f} MiB/min "
          f"({rss['samples']} samples)")  # fmt: skip
    if not args.skip_restart:
        results["restart"] = r = restart(args, beats, expected, log)
        print(f"restart: {r['completed']}/{r['requests']} requests; first attempts {r['first_attempt']}; "
              f"after up to {args.retries} retries {r['final']}; wrong class {r['wrong_class']}; "
              f"served by digests {r['model_digests']}; {r['restart']}")  # fmt: skip
    print(f"server log: {log}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, default=float) + "\n")
    ok = s["final"] == {"200": args.requests} and s["wrong_class"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
