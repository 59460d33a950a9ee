"""Shared by the benchmarks: a uvicorn server of ``python -m ecgbeats.serving`` on a loopback port,
request bodies made of real beats, and the reference workload every speed figure is printed against."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from scipy import signal

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


# The reference workload: fixed work on fixed inputs, timed in the same run as a benchmark, so that a
# figure can be read against the machine that produced it (machines of one kind differ up to 1.7x).
REFERENCE_SEED = 0
REFERENCE_MATMULS = 2  # products of two 512 x 512 float64 matrices (BLAS)
REFERENCE_SAMPLES = 1_000_000  # samples through a Butterworth band-pass (sosfilt: scalar recursion)
REFERENCE_REPEATS = 15
REFERENCE_WORKLOAD = (
    f"{REFERENCE_MATMULS} x numpy 512x512 float64 matmul + scipy sosfilt of {REFERENCE_SAMPLES:,} samples "
    "(butter 4, 0.5-40 Hz at 360 Hz), 1 BLAS thread"
)


@dataclass(frozen=True)
class Reference:
    """One measurement of the reference workload: best-of-``repeats`` milliseconds of each part."""

    matmul_ms: float
    sosfilt_ms: float
    checksum: float  # of the results: the same on every call, or the work was not the same
    repeats: int
    load: tuple[float, float, float]  # 1, 5 and 15-minute load averages after the measurement

    @property
    def ms(self) -> float:
        return self.matmul_ms + self.sosfilt_ms

    def describe(self) -> str:
        return (
            f"{self.ms:.1f} ms (matmul {self.matmul_ms:.1f} + sosfilt {self.sosfilt_ms:.1f}, best of "
            f"{self.repeats}); load {self.load[0]:.2f} {self.load[1]:.2f} {self.load[2]:.2f}"
        )


def _reference_inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(REFERENCE_SEED)
    # uniform [0, 1): positive products, so the checksum has no cancellation to amplify BLAS rounding
    a, b = rng.random((512, 512)), rng.random((512, 512))
    x = rng.standard_normal(REFERENCE_SAMPLES)
    sos = signal.butter(4, [0.5, 40.0], btype="bandpass", fs=360.0, output="sos")
    return a, b, x, sos


def reference_workload(repeats: int = REFERENCE_REPEATS) -> Reference:
    """Time the fixed reference workload on one thread; best of ``repeats`` for each part (under 1 s)."""
    from threadpoolctl import threadpool_limits  # scikit-learn's dependency: in every environment of the project

    a, b, x, sos = _reference_inputs()
    matmul, sosfilt = np.inf, np.inf
    # one BLAS thread: the figure should not depend on what else the other cores are doing
    with threadpool_limits(limits=1, user_api="blas"):
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(REFERENCE_MATMULS):
                product = a @ b
            middle = time.perf_counter()
            filtered = signal.sosfilt(sos, x)
            end = time.perf_counter()
            matmul, sosfilt = min(matmul, middle - start), min(sosfilt, end - middle)
    checksum = float(product.mean()) + float(np.dot(filtered, filtered)) / len(filtered)
    return Reference(matmul * 1000, sosfilt * 1000, checksum, repeats, os.getloadavg())


def machine() -> str:
    """CPU model, cores (usable by this process) and the BLAS numpy uses."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    from threadpoolctl import threadpool_info

    # numpy's BLAS (the matmul's), not scipy's own copy
    libraries = sorted((i for i in threadpool_info() if i.get("user_api") == "blas"),
                       key=lambda i: "numpy" not in i.get("filepath", ""))  # fmt: skip
    blas = (
        " ".join(str(libraries[0].get(k, "")) for k in ("internal_api", "version", "architecture"))
        if libraries
        else "no BLAS found"
    )
    return f"{model}, {os.cpu_count()} cores ({usable} usable), {blas}"


class ReferenceRun:
    """The reference workload before and after a benchmark, and its speed figures against it.

    A rate (beats/s, requests/s) is also printed per reference: rate x reference seconds, i.e. how many
    beats (requests) are handled in the time this machine takes for the reference workload. On a machine
    twice as fast both the rate and 1 / reference double and the figure per reference stays put, so it
    compares machines; the reference is the mean of the two measurements around the benchmark.
    """

    def __init__(self) -> None:
        self.before = reference_workload()
        self.after: Reference | None = None
        print(f"machine: {machine()}")
        print(f"reference workload: {REFERENCE_WORKLOAD}")
        print(f"reference before: {self.before.describe()}", flush=True)

    def finish(self) -> None:
        self.after = reference_workload()
        drift = self.after.ms / self.before.ms - 1
        note = f"; the machine changed during the run ({100 * drift:+.0f} %)" if abs(drift) > 0.1 else ""
        print(f"reference after: {self.after.describe()}")
        print(f"reference: {self.ms:.1f} ms, the mean of before and after{note}; a figure in X/ref is X/s x "
              f"{self.ms / 1000:.4f} s: the X done in the time this machine takes for the reference",
              flush=True)  # fmt: skip

    @property
    def ms(self) -> float:
        return self.before.ms if self.after is None else (self.before.ms + self.after.ms) / 2

    def per_reference(self, rate: float) -> float:
        return rate * self.ms / 1000

    def rate(self, value: float, unit: str) -> str:
        """``value`` ``unit``/s and per reference, e.g. ``12,345 beats/s (267 beats/ref)``."""
        return f"{figure(value)} {unit}/s ({figure(self.per_reference(value))} {unit}/ref)"

    def as_dict(self) -> dict[str, object]:
        return {
            "workload": REFERENCE_WORKLOAD,
            "machine": machine(),
            "ms": self.ms,
            "before": asdict(self.before) | {"ms": self.before.ms},
            "after": None if self.after is None else asdict(self.after) | {"ms": self.after.ms},
        }


def figure(value: float) -> str:
    """A rate to three significant digits, whole numbers from 100 up: 2.16, 21.6, 216, 2,160."""
    if not np.isfinite(value) or value <= 0:
        return f"{value:g}"
    return f"{value:,.{max(0, 2 - int(np.floor(np.log10(value))))}f}"
