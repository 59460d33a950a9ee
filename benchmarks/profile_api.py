"""Where the service's time goes under the API benchmark's load: py-spy on the server process, all threads.

    pip install py-spy==0.4.3   # the profiler is this script's own tool, not a service dependency
    python -m benchmarks.profile_api --model models/interpatient --beats data/processed/interpatient/test.parquet

Starts the service as ``benchmarks.bench_api`` does (one worker, access control on), warms it up, then
samples it with ``py-spy record --format raw`` (every thread, active samples only, ``--rate`` Hz) while
``--single`` one-beat JSON requests run, and again while ``--batches`` requests of 1,000 beats run as
JSON and as ``.npy``. Each sample is given to the innermost frame of a known part of the path (the
first rule of ``PARTS`` matching it, from the leaf up), and the shares are printed, biggest first.
"""

from __future__ import annotations

import argparse
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psutil

from benchmarks.bench_api import NPY_TYPE, batched_throughput, single_latency
from benchmarks.common import beat_payloads, load_beats, server
from ecgbeats.serving.security import hash_key

# (part, pattern of a frame "function (file:line)"); a sample counts for the innermost matching frame
PARTS = [
    ("LightGBM predict", r"Booster\.predict|lightgbm/"),
    ("drift observer and class counters", r"ServiceMetrics\.observe|DriftMonitor"),
    ("features", r"ModelBundle\.features|build_features|features/groups\.py|ArrayFeatures|beat_arrays\.py"),
    ("beat table (beat_frame)", r"beat_frame"),
    ("request: orjson + numpy parse", r"json_beats|npy_beats|beat_input\.py"),
    ("response: orjson", r"beats_response"),
    ("response: response model + JSON", r"serialize_response|jsonable_encoder|JSONResponse|\.render "),
    ("request: JSON parse (json.loads)", r"json/decoder|json/__init__|Request\.json"),
    ("request: pydantic validation", r"request_body_to_args|_validate_value|validate_python|_a_beat|range_problem"),
    ("endpoint: lists to arrays, response dicts", r"classify_beats|_probabilities|score_beats|score_arrays"),
    ("thread hop (anyio worker thread)", r"run_in_threadpool|to_thread|run_sync|WorkerThread|anyio/_backends"),
    ("socket writes (uvicorn: headers, then body)", r"_SelectorSocketTransport\.write"),
    ("FastAPI/Starlette routing and exception layers", r"fastapi/|starlette/|AsyncExitStack"),
    ("InputGuard (admission, body read and replay)", r"InputGuard|Lane"),
    ("AccessGuard (bearer key check)", r"AccessGuard|KeyRing|_bearer"),
    ("prometheus instrumentator", r"prometheus_fastapi_instrumentator|prometheus_client"),
    ("h11 protocol (uvicorn)", r"h11|H11Protocol|uvicorn/protocols|connections\.py"),
    ("event loop: epoll wait", r"selectors\.py"),
    ("event loop: other", r"asyncio|uvicorn"),
]
RULES = [(name, re.compile(pattern)) for name, pattern in PARTS]


def shares(raw: Path) -> tuple[int, list[tuple[str, float]]]:
    """Samples in a py-spy raw file, and each part's share of them."""
    counts: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        total += int(n)
        frames = stack.split(";")
        part = "other"
        for frame in reversed(frames):
            hit = next((name for name, rule in RULES if rule.search(frame)), None)
            if hit:
                part = hit
                break
        counts[part] += int(n)
    return total, [(name, 100 * n / max(total, 1)) for name, n in counts.most_common()]


def profiled(pid: int, out: Path, rate: int, load: Callable[[], object]) -> None:
    spy = shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy is not installed: pip install py-spy==0.4.3")
    command = [spy, "record", "--pid", str(pid), "--format", "raw", "-o", str(out), "--rate", str(rate),
               "--nonblocking", "--threads"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.5)  # py-spy attaches
    try:
        load()
    finally:
        proc.send_signal(2)  # py-spy writes its file on SIGINT
        _, err = proc.communicate(timeout=60)
    if not out.is_file():
        raise SystemExit(f"py-spy wrote no profile: {err.decode()[-300:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/interpatient"))
    parser.add_argument("--beats", type=Path, default=Path("data/processed/interpatient/test.parquet"))
    parser.add_argument("--single", type=int, default=3000, help="one-beat requests profiled")
    parser.add_argument("--batches", type=int, default=40, help="1,000-beat requests profiled, per request type")
    parser.add_argument("--rate", type=int, default=500, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=12, help="parts printed per load")
    args = parser.parse_args(argv)

    beats = beat_payloads(load_beats(args.beats, 2000))
    work = Path(tempfile.mkdtemp(prefix="ecgbeats-profile-"))
    key = secrets.token_urlsafe(32)
    with server(args.model, work / "server.log", 1, api_keys=hash_key(key)) as (base, proc):
        process = psutil.Process(proc.pid)
        single_latency(base, key, beats, 200, 10, process)  # warm-up
        loads: dict[str, Callable[[], object]] = {
            f"one beat (JSON), {args.single} requests": lambda: single_latency(base, key, beats, args.single, 0,
                                                                               process),
            f"1,000 beats (JSON), {args.batches} requests": lambda: batched_throughput(
                base, key, beats, 1000, args.batches, 1, "application/json"),
            f"1,000 beats (.npy), {args.batches} requests": lambda: batched_throughput(
                base, key, beats, 1000, args.batches, 1, NPY_TYPE),
        }  # fmt: skip
        for i, (name, load) in enumerate(loads.items()):
            out = work / f"profile{i}.txt"
            profiled(proc.pid, out, args.rate, load)
            total, parts = shares(out)
            print(f"\n{name}: {total:,} active samples of the server process ({out})")
            for part, share in parts[: args.top]:
                print(f"  {share:5.1f} %  {part}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
