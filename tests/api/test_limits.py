"""Connection and admission limits against a real server on loopback: stalled headers and bodies are
cut off, a connection beyond the cap and a request beyond a lane's queue get 503 with Retry-After at
once, /health keeps answering, and a shutdown with a stalled client ends in bounded time."""

from __future__ import annotations

import json
import signal
import socket
import time
from contextlib import ExitStack
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest

from tests.api.conftest import running_server, serving_process

WAIT = 15.0  # upper bound for any deadline below to be seen (the deadlines themselves are 1-2 s)


def _connect(base: str) -> socket.socket:
    url = urlparse(base)
    sock = socket.create_connection((url.hostname, url.port), timeout=WAIT)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (bounded by the socket timeout)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _strip(seconds: float = 12.0, fs: float = 250.0) -> bytes:
    t = np.arange(int(seconds * fs)) / fs
    signal_mv = 0.05 * np.sin(2 * np.pi * 0.3 * t) + np.where((t % 0.8) < 0.03, 1.0, 0.0)
    return json.dumps({"fs": fs, "signal": signal_mv.round(4).tolist()}).encode()


def _head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n"
    ).encode()


@pytest.fixture(scope="module")
def limited_server(bundle_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("limits") / "server.log"
    with running_server(
        log, model_dir=bundle_dir, header_timeout=1, body_timeout=2, max_connections=40,
        strip_workers=1, beat_workers=1, max_queued=1, retry_after=3,
    ) as base:  # fmt: skip
        yield base


def test_stalled_headers_get_408_and_the_connection_is_closed(limited_server):
    with ExitStack() as stack:
        silent = stack.enter_context(_connect(limited_server))  # sends nothing at all
        partial = stack.enter_context(_connect(limited_server))
        partial.sendall(b"POST /v1/beats:classify HTTP/1.1\r\nhost: test\r\ncontent-ty")
        start = time.monotonic()
        for sock in (silent, partial):
            reply = _read_all(sock)
            assert reply.startswith(b"HTTP/1.1 408"), reply[:80]
            assert b"request_timeout" in reply
        assert time.monotonic() - start < WAIT


def test_a_stalled_body_gets_408_and_health_keeps_answering(limited_server):
    body = _strip()
    with _connect(limited_server) as sock:
        sock.sendall(_head("/v1/ecg:classify", len(body)) + body[: len(body) // 2])
        assert httpx.get(f"{limited_server}/health", timeout=5).status_code == 200
        reply = _read_all(sock)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:80]
    assert b'"field": "body"' in reply


def test_many_half_sent_requests_are_all_closed_by_the_header_deadline(limited_server):
    with ExitStack() as stack:
        socks = [stack.enter_context(_connect(limited_server)) for _ in range(30)]
        for sock in socks:
            sock.sendall(b"GET /health HTTP/1.1\r\nhost: te")
        replies = [_read_all(sock) for sock in socks]
    assert all(reply.startswith(b"HTTP/1.1 408") for reply in replies)
    assert httpx.get(f"{limited_server}/health", timeout=5).status_code == 200


def test_beyond_the_cap_the_longest_stalled_connection_makes_room_for_a_new_one(bundle_dir, tmp_path):
    log = tmp_path / "server.log"
    with running_server(log, model_dir=bundle_dir, max_connections=5, header_timeout=30) as base, ExitStack() as stack:
        held = []
        for _ in range(5):
            held.append(stack.enter_context(_connect(base)))
            time.sleep(0.05)  # accepted in this order
        # a probe on a new connection is served; the first stalled connection is closed with 503
        assert httpx.get(f"{base}/health", timeout=5).status_code == 200
        reply = _read_all(held[0])
        assert reply.startswith(b"HTTP/1.1 503"), reply[:80]
        assert b"retry-after: 1" in reply.lower()
        held[1].settimeout(0.5)
        with pytest.raises(TimeoutError):
            held[1].recv(1)  # the others are still open


def test_beyond_the_cap_with_every_connection_in_a_request_a_new_one_gets_503(bundle_dir, tmp_path):
    body = _strip()
    limits = dict(max_connections=2, header_timeout=30, body_timeout=30)
    with running_server(tmp_path / "server.log", model_dir=bundle_dir, **limits) as base, ExitStack() as stack:
        for _ in range(2):  # requests whose bodies never finish
            sock = stack.enter_context(_connect(base))
            sock.sendall(_head("/v1/beats:classify", len(body)) + b"{")
        time.sleep(0.3)
        with _connect(base) as extra:
            reply = _read_all(extra)
        assert reply.startswith(b"HTTP/1.1 503"), reply[:80]
        assert b"retry-after: 1" in reply.lower()


def test_a_full_lane_answers_503_at_once_while_the_other_lane_and_health_work(limited_server):
    body = _strip()
    with ExitStack() as stack:
        # one strip holds the lane's only worker (its body arrives slowly), one more waits in its queue
        busy = [stack.enter_context(_connect(limited_server)) for _ in range(2)]
        for sock in busy:
            sock.sendall(_head("/v1/ecg:classify", len(body)) + body[:100])
        time.sleep(0.3)
        start = time.monotonic()
        refused = httpx.post(
            f"{limited_server}/v1/ecg:classify", content=body, headers={"content-type": "application/json"}
        )
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "3"
        assert refused.json()["error"] == "overloaded"
        assert time.monotonic() - start < 2.0  # refused without waiting for the lane
        beats = {"beats": [{"samples": [1.0] + [0.5] * 185 + [0.0]}]}
        assert httpx.post(f"{limited_server}/v1/beats:classify", json=beats).status_code == 200
        assert httpx.get(f"{limited_server}/health").status_code == 200
        rejected = httpx.get(f"{limited_server}/metrics").text
        assert 'reason="overloaded"' in rejected
    # the stalled strips time out and free the lane
    deadline = time.monotonic() + WAIT
    while (
        httpx.post(
            f"{limited_server}/v1/ecg:classify", content=body, headers={"content-type": "application/json"}
        ).status_code
        == 503
    ):
        assert time.monotonic() < deadline, "the lane was not freed"
        time.sleep(0.5)


def test_a_shutdown_with_a_client_stalled_mid_body_ends_in_bounded_time(bundle_dir, tmp_path):
    settings = dict(model_dir=bundle_dir, body_timeout=600, shutdown_timeout=2)
    with serving_process(tmp_path / "server.log", **settings) as (proc, base), _connect(base) as sock:
        body = _strip()
        sock.sendall(_head("/v1/ecg:classify", len(body)) + body[:1000])
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        start = time.monotonic()
        proc.wait(timeout=WAIT)
        assert time.monotonic() - start < WAIT


def test_a_stopped_service_leaves_no_worker_process_behind(bundle_dir, tmp_path):
    import psutil

    with serving_process(tmp_path / "server.log", model_dir=bundle_dir, strip_workers=2) as (proc, _):
        workers = psutil.Process(proc.pid).children()
        assert len(workers) >= 2  # the strip workers (and multiprocessing's resource tracker)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=WAIT)
    _, alive = psutil.wait_procs(workers, timeout=5)
    assert alive == [], [p.cmdline()[-2:] for p in alive]


def test_a_long_strip_is_scored_in_a_worker_process_while_beats_are_answered(limited_server):
    from concurrent.futures import ThreadPoolExecutor

    import wfdb

    from tests.conftest import FIXTURE_MIRROR

    record = wfdb.rdrecord(str(FIXTURE_MIRROR / "213"), channels=[0])
    # the 3-minute excerpt ten times: 30 minutes, a few tenths of a second of the worker's time
    body = {"fs": 360.0, "signal": np.tile(np.round(record.p_signal[:, 0], 4), 10).tolist()}
    beats = {"beats": [{"samples": [1.0] + [0.5] * 185 + [0.0]}]}

    def predicted() -> float:
        text = httpx.get(f"{limited_server}/metrics").text
        return sum(float(x.split()[-1]) for x in text.splitlines() if x.startswith("ecgbeats_predicted_beats_total{"))

    before = predicted()
    with ThreadPoolExecutor(1) as pool:
        strip = pool.submit(httpx.post, f"{limited_server}/v1/ecg:classify", json=body, timeout=120)
        answered_during = 0
        with httpx.Client(base_url=limited_server, timeout=10) as client:  # kept alive: a few ms a request
            while not strip.done():
                if client.post("/v1/beats:classify", json=beats).status_code == 200:
                    answered_during += 1
        response = strip.result()
    assert response.status_code == 200, response.text
    assert answered_during >= 10  # the event loop and the beat workers were not held by the strip
    scored = response.json()["summary"]["beats"]
    assert predicted() == before + scored + answered_during  # the strip's beats reached the counters too


@pytest.mark.parametrize("path", ["/health", "/", "/viewer", "/nowhere"])
def test_a_body_to_a_path_that_takes_none_is_refused_before_it_is_read(limited_server, path):
    with _connect(limited_server) as sock:
        start = time.monotonic()
        sock.sendall(_head(path, 30_000_000))  # a large body announced, none of it sent
        reply = _read_all(sock)  # answered, and the connection closed, without waiting for the body
        elapsed = time.monotonic() - start
    assert reply.startswith(b"HTTP/1.1 405"), reply[:80]
    assert b'"error": "method_not_allowed"' in reply and b"allow: get, head" in reply.lower()
    assert elapsed < 1.0  # the body deadline is 2 s: the refusal does not wait for it
