"""The service under abuse, on loopback: stalled connections, a flood of connections, a flood of idle
keep-alive connections, a reconnecting flood of slow-header clients at the connection cap, slow uploads,
heavy strips at once, mixed load, and a shutdown with a stalled client. Prints one table row per probe.

Starts ``python -m ecgbeats.serving`` with the default limits (``ECGBEATS_AUTH=off``) on a free port:

    python -m benchmarks.bench_abuse --model models/interpatient

A beat-row bundle answers both classify endpoints, so one server takes the mixed load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.common import ROOT, free_port, start_server

RAW = ROOT / "data" / "raw" / "mitdb"


def rss_mib(pid: int) -> tuple[float, float]:
    """Resident and peak resident memory of a process and its children (the strip workers), MiB."""
    total, peak = 0.0, 0.0
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for each in [pid, *map(int, children)]:
        status = Path(f"/proc/{each}/status").read_text().splitlines()
        fields = dict(line.split(":", 1) for line in status if ":" in line)
        total += int(fields["VmRSS"].split()[0]) / 1024
        peak += int(fields["VmHWM"].split()[0]) / 1024
    return total, peak


class Server:
    def __init__(self, model: Path, log: Path, **settings: object) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = start_server(model, self.port, log, **settings)

    def health_ms(self) -> float:
        start = time.perf_counter()
        try:
            ok = httpx.get(f"{self.base}/health", timeout=10).status_code == 200
        except httpx.TransportError:
            ok = False
        return (time.perf_counter() - start) * 1000 if ok else float("inf")

    def stop(self) -> float:
        """SIGTERM; seconds until the process is gone."""
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return float("inf")
        return time.monotonic() - start


def strip_body(seconds: float, fs: float, record: str = "100") -> bytes:
    """The first ``seconds`` of a MIT-BIH record's first lead, resampled to ``fs`` (a real ECG)."""
    import wfdb
    from scipy.signal import resample_poly

    rec = wfdb.rdrecord(str(RAW / record), channels=[0], sampto=min(int(seconds * 360), 650000))
    signal_mv = rec.p_signal[:, 0]
    if fs != 360:
        signal_mv = resample_poly(signal_mv, int(fs), 360)
    return json.dumps({"fs": fs, "signal": np.round(signal_mv, 4).tolist()}).encode()


def one_beat() -> bytes:
    samples = [1.0] + list(np.round(np.linspace(0.6, 0.1, 120), 4)) + [0.0] * 66
    return json.dumps({"beats": [{"samples": samples}]}).encode()


async def _half_sent(port: int, n: int, hold: float) -> tuple[int, int, int, int, float]:
    """Open ``n`` connections that send part of their headers; how many the server closed, how many it
    answered with 408/503, how many could not connect, and the seconds until the last was closed."""
    start = time.monotonic()

    async def one() -> tuple[bool, bytes, float]:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False, b"refused", 0.0
        writer.write(b"POST /v1/beats:classify HTTP/1.1\r\nhost: x\r\ncontent-ty")
        await writer.drain()
        try:
            data, closed = await asyncio.wait_for(reader.read(), timeout=hold), True
        except ConnectionError:  # closed by the server with a reset: the request was never read whole
            data, closed = b"reset", True
        except TimeoutError:
            data, closed = b"", False
        writer.close()
        return closed, data, time.monotonic() - start

    results = await asyncio.gather(*(one() for _ in range(n)))
    closed = sum(r[0] for r in results)
    answered = sum(r[1].startswith((b"HTTP/1.1 408", b"HTTP/1.1 503")) for r in results)
    reset = sum(r[1] == b"reset" for r in results)
    refused = sum(r[1] == b"refused" for r in results)
    return closed, answered, reset, refused, max((r[2] for r in results if r[0]), default=float("nan"))


@contextlib.contextmanager
def watching_health(server: Server, every: float) -> Iterator[list[float]]:
    """``/health`` latencies (ms; inf: no answer) probed every ``every`` seconds while the block runs."""
    health: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            health.append(server.health_ms())
            time.sleep(every)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield health
    finally:
        stop.set()
        watcher.join()


def probe_half_sent(server: Server, n: int) -> str:
    with watching_health(server, every=0.25) as health:
        closed, answered, reset, refused, last = asyncio.run(_half_sent(server.port, n, hold=60))
    finite = [h for h in health if h != float("inf")]
    return (
        f"{n:,} half-sent requests | {closed:,} closed by the server ({answered:,} with 408/503, {reset:,} reset), "
        f"the last after {last:.1f} s; {refused:,} could not connect (the listen backlog), "
        f"{n - closed - refused:,} still open after 60 s; /health answered {len(finite)} of {len(health)} probes, "
        f"p50 {statistics.median(finite):.1f} ms, max {max(finite):.0f} ms"
    )


async def _idle_kept_alive(port: int, n: int, hold: float) -> list[tuple[str, float]]:
    """Open ``n`` connections that each send one ``GET /health`` and then stay quiet; for each, the status
    of its answer (``refused``, ``reset``) and the seconds from the answer until the server closed it."""

    async def one() -> tuple[str, float]:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return "refused", float("nan")
        try:
            writer.write(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=hold)
            length = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
            await reader.readexactly(int(length.group(1)) if length else 0)
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            writer.close()
            return "reset", float("nan")
        status = head[9:12].decode()
        answered = time.monotonic()
        try:
            await asyncio.wait_for(reader.read(), timeout=hold)  # b"" once the server closes it
            closed_after = time.monotonic() - answered
        except TimeoutError:
            closed_after = float("inf")
        except ConnectionError:
            closed_after = time.monotonic() - answered
        writer.close()
        return status, closed_after

    return await asyncio.gather(*(one() for _ in range(n)))


async def _reconnecting(port: int, clients: int, seconds: float) -> dict[str, int]:
    """``clients`` slow-header clients for ``seconds``: each sends part of a request head and, whenever
    the server closes its connection, dials again at once. How the server closed them."""
    deadline = time.monotonic() + seconds
    counts = {"dials": 0, "503": 0, "408": 0, "other": 0, "reset": 0, "failed": 0}

    async def one() -> None:
        while (left := deadline - time.monotonic()) > 0:
            counts["dials"] += 1
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), left)
            except (OSError, TimeoutError):
                counts["failed"] += 1
                await asyncio.sleep(0.05)
                continue
            try:
                writer.write(b"POST /v1/beats:classify HTTP/1.1\r\nhost: x\r\ncontent-ty")
                data = await asyncio.wait_for(reader.read(), max(0.01, deadline - time.monotonic()))
                status = data[9:12].decode(errors="replace")
                counts[status if status in ("503", "408") else "other"] += 1
            except TimeoutError:
                return  # the flood is over
            except OSError:
                counts["reset"] += 1
            finally:
                writer.close()

    await asyncio.gather(*(one() for _ in range(clients)))
    return counts


def reconnecting_flood(
    port: int, clients: int, seconds: float, cpus: set[int] | None = None, report: Any = None
) -> dict[str, int]:
    """:func:`_reconnecting` in this process, pinned to ``cpus`` if given; ``report`` (a multiprocessing
    queue) gets "started" once the flood starts, then the counts."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if report is not None:
        report.put("started")
    counts = asyncio.run(_reconnecting(port, clients, seconds))
    if report is not None:
        report.put(counts)
    return counts


def split_cores(server_pid: int) -> set[int] | None:
    """Pin the server's event loop to one core and return the others, for a client that must not take
    the server's CPU; None (nothing pinned) on a single core."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None
    os.sched_setaffinity(server_pid, {cores[0]})  # the main thread: uvicorn's event loop
    return set(cores[1:])


def start_flood(port: int, clients: int, seconds: float, cpus: set[int] | None) -> tuple[Any, Any]:
    """:func:`reconnecting_flood` in a new process; returns the process and its queue, once it has started."""
    context = multiprocessing.get_context("spawn")
    report = context.Queue()
    flood = context.Process(target=reconnecting_flood, args=(port, clients, seconds, cpus, report), daemon=True)
    flood.start()
    if report.get(timeout=60) != "started":
        raise RuntimeError("the flood did not start")
    return flood, report


def probe_reconnecting_flood(model: Path, log: Path, clients: int, cap: int, seconds: float) -> str:
    """``clients`` reconnecting slow-header clients against a server capped at ``cap`` connections, from
    another core than the server's event loop, while ``/health`` is probed on new connections."""
    server = Server(model, log, max_connections=cap)
    cpus = split_cores(server.proc.pid)
    flood, report = start_flood(server.port, clients, seconds, cpus)
    time.sleep(2.0)  # every client connected and evicting
    health: list[float] = []
    failures: list[str] = []
    end = time.monotonic() + seconds - 4.0
    while time.monotonic() < end:
        start = time.perf_counter()
        try:
            code = httpx.get(f"{server.base}/health", timeout=10).status_code
        except httpx.TransportError as err:
            code = type(err).__name__
        if code == 200:
            health.append((time.perf_counter() - start) * 1000)
        else:
            failures.append(str(code))
        time.sleep(0.25)
    counts = report.get(timeout=seconds + 60)
    flood.join(30)
    server.stop()
    pinned = (
        f"server loop on core {min(os.sched_getaffinity(0) - cpus)}, flood on {sorted(cpus)}" if cpus else "unpinned"
    )
    return (
        f"{clients:,} slow-header clients re-dialling when closed, cap {cap:,}, {seconds:g} s ({pinned}) | "
        f"{counts['503']:,} with 503 (evicted or refused), {counts['408']:,} with 408, {counts['reset']:,} reset, "
        f"{counts['failed']:,} dials failed; /health answered {len(health)} of {len(health) + len(failures)} "
        f"probes{' (failures: ' + ', '.join(sorted(set(failures))) + ')' if failures else ''}, "
        f"p50 {statistics.median(health) if health else float('nan'):.0f} ms, "
        f"max {max(health, default=float('nan')):.0f} ms"
    )


def probe_idle_kept_alive(server: Server, n: int) -> str:
    with watching_health(server, every=0.25) as health:
        results = asyncio.run(_idle_kept_alive(server.port, n, hold=90))
    statuses = {k: sum(r[0] == k for r in results) for k in sorted({r[0] for r in results})}
    closed = sorted(r[1] for r in results if r[0] == "200" and r[1] != float("inf"))
    still_open = sum(r[0] == "200" and r[1] == float("inf") for r in results)
    finite = [h for h in health if h != float("inf")]
    return (
        f"{n:,} connections each quiet after one GET /health | answers {statuses}; the server closed the idle ones "
        f"after p50 {statistics.median(closed) if closed else float('nan'):.1f} s, the last after "
        f"{max(closed, default=float('nan')):.1f} s, {still_open:,} still open after 90 s; /health on new "
        f"connections meanwhile answered {len(finite)} of {len(health)} probes, "
        f"max {max(finite, default=float('nan')):.0f} ms"
    )


def probe_slow_uploads(server: Server, n: int, bytes_per_second: int, duration: float) -> str:
    """``n`` uploads of a 1-minute strip trickling ``bytes_per_second`` each for ``duration`` seconds, while
    one client posts the same strip whole, one after the other."""
    body = strip_body(60, 360.0)
    head = (
        f"POST /v1/ecg:classify HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode()
    socks = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(n)]
    for sock in socks:
        sock.sendall(head)
    stop = threading.Event()

    def trickle() -> None:
        sent = 0
        while not stop.wait(0.1) and sent < len(body) - bytes_per_second:
            for sock in socks:
                with contextlib.suppress(OSError):  # closed by the server (its body deadline)
                    sock.sendall(body[sent : sent + bytes_per_second // 10])
            sent += bytes_per_second // 10

    trickler = threading.Thread(target=trickle)
    trickler.start()
    answers: list[tuple[int, float, str]] = []
    deadline = time.monotonic() + duration
    with httpx.Client(base_url=server.base, timeout=120) as client:
        while time.monotonic() < deadline:
            start = time.perf_counter()
            response = client.post("/v1/ecg:classify", content=body, headers={"content-type": "application/json"})
            message = response.json().get("message", "") if response.status_code != 200 else ""
            answers.append((response.status_code, time.perf_counter() - start, message))
            if response.status_code == 503:
                time.sleep(float(response.headers.get("retry-after", "1")))
    stop.set()
    trickler.join()
    for sock in socks:
        sock.close()
    codes = {code: sum(a[0] == code for a in answers) for code in sorted({a[0] for a in answers})}
    ok = [a[1] for a in answers if a[0] == 200]
    refusal = next((a[2] for a in answers if a[0] == 503), "")
    return (
        f"{n} uploads of a 1-min strip ({len(body) / 1e3:.0f} kB) at {bytes_per_second / 1024:g} KiB/s each, "
        f"{duration:g} s | whole strips posted meanwhile: answers {codes}, 200s took "
        f"{min(ok, default=float('nan')):.2f}-{max(ok, default=float('nan')):.2f} s"
        + (f"; first 503: {refusal!r}" if refusal else "")
    )


def probe_heavy(server: Server, seconds: float, fs: float, concurrent: int) -> str:
    body = strip_body(seconds, fs)
    rss0, _ = rss_mib(server.proc.pid)

    def post(_: int) -> tuple[int, float, str, str]:
        start = time.perf_counter()
        response = httpx.post(
            f"{server.base}/v1/ecg:classify", content=body, headers={"content-type": "application/json"}, timeout=600
        )
        message = "" if response.status_code in (200, 503) else response.json().get("message", "")[:120]
        return response.status_code, time.perf_counter() - start, response.headers.get("retry-after", ""), message

    with watching_health(server, every=0.5) as health, ThreadPoolExecutor(concurrent) as pool:
        results = list(pool.map(post, range(concurrent)))
    time.sleep(1.0)
    rss1, peak = rss_mib(server.proc.pid)
    codes = {code: sum(r[0] == code for r in results) for code in sorted({r[0] for r in results})}
    errors = sorted({r[3] for r in results if r[0] not in (200, 503)})
    retry_after = next((r[2] for r in results if r[0] == 503), "-")
    ok = [r[1] for r in results if r[0] == 200]
    refused = [r[1] for r in results if r[0] == 503]
    finite = [h for h in health if h != float("inf")]
    return (
        f"{concurrent} x {seconds / 60:g}-min strips at {fs:g} Hz ({len(body) / 1e6:.1f} MB each) | answers {codes}; "
        f"200s took {min(ok, default=0):.1f}-{max(ok, default=0):.1f} s; 503s in "
        f"{max(refused, default=0) * 1000:.0f} ms at most (Retry-After {retry_after}); /health p50 "
        f"{statistics.median(finite):.0f} ms, max {max(finite):.0f} ms; RSS {rss0:.0f} MiB before, peak {peak:.0f}, "
        f"{rss1:.0f} after" + (f"; errors: {errors}" if errors else "")
    )


def probe_mixed(server: Server, clients: int, strip_clients: int, duration: float) -> str:
    beat = one_beat()
    strip = strip_body(300, 360.0, record="213")
    latencies: list[float] = []
    beat_refused: list[int] = []
    strip_codes: list[int] = []
    deadline = time.monotonic() + duration

    def beat_client(_: int) -> None:
        with httpx.Client(base_url=server.base, timeout=60) as client:
            while time.monotonic() < deadline:
                start = time.perf_counter()
                response = client.post("/v1/beats:classify", content=beat, headers={"content-type": "application/json"})
                if response.status_code == 200:
                    latencies.append((time.perf_counter() - start) * 1000)
                elif response.status_code == 503:
                    beat_refused.append(1)
                    time.sleep(float(response.headers.get("retry-after", "1")))

    def strip_client(_: int) -> None:
        with httpx.Client(base_url=server.base, timeout=300) as client:
            while time.monotonic() < deadline:
                response = client.post("/v1/ecg:classify", content=strip, headers={"content-type": "application/json"})
                strip_codes.append(response.status_code)
                if response.status_code == 503:
                    time.sleep(float(response.headers.get("retry-after", "1")))

    with ThreadPoolExecutor(clients) as pool:
        for i in range(clients):
            pool.submit(strip_client if i < strip_clients else beat_client, i)
    latencies.sort()
    p = {q: latencies[min(len(latencies) - 1, int(q / 100 * len(latencies)))] for q in (50, 99)}
    return (
        f"{clients} concurrent clients for {duration:g} s ({strip_clients} posting 5-min strips) | one-beat "
        f"requests: {len(latencies):,} answered, p50 {p[50]:.1f} ms, p99 {p[99]:.1f} ms, {len(beat_refused)} told "
        f"to retry (503); strips: "
        f"{strip_codes.count(200)} scored, {strip_codes.count(503)} told to retry (503)"
    )


def probe_shutdown(model: Path, log: Path) -> str:
    server = Server(model, log)
    body = strip_body(60, 360.0)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        head = (
            f"POST /v1/ecg:classify HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        ).encode()
        sock.sendall(head + body[:1000])
        time.sleep(0.5)
        took = server.stop()
    return f"SIGTERM with a client stalled mid-body | the process exited after {took:.1f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/interpatient"), help="a beat-row bundle")
    parser.add_argument("--half-sent", type=int, default=2000)
    parser.add_argument("--flood", type=int, default=5000, help="connections opened at once (half-sent)")
    parser.add_argument("--idle", type=int, default=1500, help="connections quiet after one GET /health")
    parser.add_argument("--slow-uploads", type=int, default=9, help="strip uploads trickling at 1 KiB/s")
    parser.add_argument("--reconnecting", type=int, default=2000, help="slow-header clients re-dialling when closed")
    parser.add_argument("--only-reconnecting", action="store_true", help="run the reconnecting flood alone")
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # this client holds thousands of sockets
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; file-descriptor limit {hard}")
    with tempfile.TemporaryDirectory() as tmp:
        flood = probe_reconnecting_flood(args.model, Path(tmp) / "flood.log", args.reconnecting, 1000, 45.0)
        if args.only_reconnecting:
            print(f"\n| probe | after |\n|---|---|\n| {flood} |")
            return 0
        log = Path(tmp) / "server.log"
        server = Server(args.model, log)
        rows = [probe_half_sent(server, args.half_sent), probe_half_sent(server, args.flood)]
        rows.append(probe_idle_kept_alive(server, args.idle))
        rows.append(flood)
        rows.append(probe_slow_uploads(server, args.slow_uploads, 1024, 30.0))
        rows.append(probe_heavy(server, 1800, 1000.0, 1))
        rows.append(probe_heavy(server, 1800, 1000.0, 10))
        rows.append(probe_mixed(server, 32, 4, 30.0))
        log_size = log.stat().st_size
        rows.append(f"server log after all of the above | {log_size / 1024:.0f} KiB")
        server.stop()
        rows.append(probe_shutdown(args.model, Path(tmp) / "shutdown.log"))
    print("\n| probe | after |\n|---|---|")
    for row in rows:
        print(f"| {row} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
