"""Shared by the benchmarks: a uvicorn server of ``python -m ecgbeats.serving`` on a loopback port,
and request bodies made of real beats."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
STARTUP_SECONDS = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(
    model: Path, port: int, log: Path, workers: int = 1, keep_alive: int | None = None, **settings: object
) -> subprocess.Popen:
    """Start the service (``workers`` uvicorn workers) and wait until ``/ready`` answers 200.

    ``python -m ecgbeats.serving`` by default; with ``keep_alive`` (seconds an idle keep-alive
    connection stays open; uvicorn's default is 5) the uvicorn CLI on the app factory, the other
    documented way to run the service, which exposes ``--timeout-keep-alive``.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECGBEATS_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["ECGBEATS_MODEL_DIR"] = str(model)
    env["ECGBEATS_AUTH"] = "off"  # loopback measurements; pass auth="keys" and keys to measure with them
    env.update({f"ECGBEATS_{k.upper()}": str(v) for k, v in settings.items()})
    with open(log, "a") as out:
        common = ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--workers", str(workers)]
        if keep_alive is None:
            command = [sys.executable, "-m", "ecgbeats.serving", *common]
        else:
            command = [sys.executable, "-m", "uvicorn", "--factory", "ecgbeats.serving.api:app_from_env", *common,
                       "--timeout-keep-alive", str(int(keep_alive))]  # fmt: skip
        proc = subprocess.Popen(
            command,
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}; see {log}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                return proc
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the server was not ready within {STARTUP_SECONDS} s; see {log}")
        time.sleep(0.1)


def stop_server(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


@contextlib.contextmanager
def server(model: Path, log: Path, workers: int = 1, **settings: object) -> Iterator[tuple[str, subprocess.Popen]]:
    port = free_port()
    proc = start_server(model, port, log, workers, **settings)
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        stop_server(proc)


def load_beats(path: Path, n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` random beats of a beat table that pass the API's limits."""
    frame = pd.read_parquet(path)
    ok = frame["length"] <= 2000
    for col in ("rr_prev", "rr_next", "rr_local"):
        ok &= (frame[col] > 0) & (frame[col] <= 10)
    frame = frame[ok].reset_index(drop=True)
    pick = np.random.default_rng(seed).choice(len(frame), size=min(n, len(frame)), replace=False)
    return frame.iloc[pick].reset_index(drop=True)


def beat_payloads(frame: pd.DataFrame) -> list[dict[str, object]]:
    """One API beat object per row (samples, length and the RR intervals)."""
    samples = frame[[f"s{i:03d}" for i in range(187)]].to_numpy(dtype=np.float64)
    out = []
    for i in range(len(frame)):
        out.append({
            "samples": [round(float(v), 6) for v in samples[i]],
            "length": int(frame["length"].iat[i]),
            "rr_prev": float(frame["rr_prev"].iat[i]),
            "rr_next": float(frame["rr_next"].iat[i]),
            "rr_local": float(frame["rr_local"].iat[i]),
        })  # fmt: skip
    return out


def percentile_ms(seconds: list[float] | np.ndarray, q: float) -> float:
    return float(np.percentile(np.asarray(seconds) * 1000.0, q))
