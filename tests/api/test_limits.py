"""Connection and admission limits against a real server on loopback: stalled headers and bodies are
cut off, idle keep-alive connections are closed and make room at the cap, slow uploads hold no worker,
a connection beyond the cap and a request beyond a lane's queue get 503 with Retry-After at once,
/health keeps answering (through a reconnecting flood at the cap too), and a shutdown with a stalled
client ends in bounded time, with uploads in flight logging one line each."""

from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest

from benchmarks.bench_abuse import split_cores, start_flood
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


def _one_response(sock: socket.socket) -> bytes:
    """One response on a kept-alive connection (its head and its content-length body); what came if the
    server closed the connection first, b"" if it reset it."""
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            if not (chunk := sock.recv(65536)):
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
        while length and len(body) < int(length.group(1)):
            if not (chunk := sock.recv(65536)):
                break
            body += chunk
        return head + b"\r\n\r\n" + body
    except ConnectionError:
        return data


def _get(sock: socket.socket, path: str) -> bytes:
    try:
        sock.sendall(f"GET {path} HTTP/1.1\r\nhost: test\r\n\r\n".encode())
    except ConnectionError:
        return b""
    return _one_response(sock)


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``sock`` within ``seconds``, sending nothing more."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except ConnectionError:
        return True
    except TimeoutError:
        return False


def _strip(seconds: float = 12.0, fs: float = 250.0) -> bytes:
    t = np.arange(int(seconds * fs)) / fs
    signal_mv = 0.05 * np.sin(2 * np.pi * 0.3 * t) + np.where((t % 0.8) < 0.03, 1.0, 0.0)
    return json.dumps({"fs": fs, "signal": signal_mv.round(4).tolist()}).encode()


def _head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n"
    ).encode()


def _long_strip() -> dict:
    """Record 213's 3-minute excerpt ten times: a 30-minute strip, a few tenths of a second of the worker's time."""
    import wfdb

    from tests.conftest import FIXTURE_MIRROR

    record = wfdb.rdrecord(str(FIXTURE_MIRROR / "213"), channels=[0])
    return {"fs": 360.0, "signal": np.tile(np.round(record.p_signal[:, 0], 4), 10).tolist()}


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


def test_health_probes_answer_through_a_reconnecting_slow_header_flood(bundle_dir, tmp_path):
    # 300 clients against a cap of 20, each dialling again as soon as it is evicted: thousands of
    # evictions a second, from another core than the server's event loop where there is one
    seconds, cap = 10.0, 20
    with serving_process(tmp_path / "server.log", model_dir=bundle_dir, max_connections=cap, header_timeout=30) as (
        proc,
        base,
    ):
        flood, report = start_flood(urlparse(base).port, 300, seconds, split_cores(proc.pid))
        try:
            time.sleep(1.5)  # every client connected and being evicted
            answers: list[tuple[int | str, float]] = []
            end = time.monotonic() + seconds - 3.5
            while time.monotonic() < end:
                start = time.monotonic()
                try:
                    code: int | str = httpx.get(f"{base}/health", timeout=WAIT).status_code  # a new connection
                except httpx.TransportError as err:
                    code = type(err).__name__
                answers.append((code, time.monotonic() - start))
                time.sleep(0.1)
            counts = report.get(timeout=seconds + WAIT)
        finally:
            flood.join(WAIT)
            if flood.is_alive():
                flood.kill()
    assert counts["503"] > 50 * cap, counts  # the flood kept the server at its cap, evicting
    assert [code for code, _ in answers] == [200] * len(answers), answers
    assert len(answers) >= 10
    assert max(took for _, took in answers) < 5.0, answers


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
    body = json.dumps(_long_strip()).encode()  # about 5 MB: received in milliseconds, scored in tenths of a second
    beats = {"beats": [{"samples": [1.0] + [0.5] * 185 + [0.0]}]}

    def post(_: int) -> tuple[httpx.Response, float]:
        start = time.monotonic()
        response = httpx.post(
            f"{limited_server}/v1/ecg:classify", content=body, headers={"content-type": "application/json"},
            timeout=120,
        )  # fmt: skip
        return response, time.monotonic() - start

    # six whole strips at once on one worker with one place in its queue
    with ThreadPoolExecutor(6) as pool:
        strips = [pool.submit(post, i) for i in range(6)]
        with httpx.Client(base_url=limited_server, timeout=10) as client:
            while not all(s.done() for s in strips):
                assert client.post("/v1/beats:classify", json=beats).status_code == 200  # the other lane works
                assert client.get("/health").status_code == 200
        answers = [s.result() for s in strips]
    codes = sorted(r.status_code for r, _ in answers)
    assert set(codes) == {200, 503} and codes.count(200) >= 2, codes
    for refused, took in (a for a in answers if a[0].status_code == 503):
        assert refused.headers["retry-after"] == "3"
        assert refused.json()["error"] == "overloaded"
        # the state it names is the real one: strips in a worker and in the queue, their bodies received
        assert refused.json()["message"].startswith("1 strip is being scored and 1 more is queued"), refused.json()
        assert took < 2.0  # refused without waiting for the lane
    assert 'reason="overloaded"' in httpx.get(f"{limited_server}/metrics").text


def test_slow_uploads_do_not_hold_the_strip_lane(bundle_dir, tmp_path):
    body = _strip()
    limits = dict(strip_workers=1, max_queued=1, header_timeout=30, body_timeout=30)
    with running_server(tmp_path / "server.log", model_dir=bundle_dir, **limits) as base, ExitStack() as stack:
        # twice as many uploads as the lane's worker and queue, each trickling its body a byte at a time
        slow = [stack.enter_context(_connect(base)) for _ in range(4)]
        for sock in slow:
            sock.sendall(_head("/v1/ecg:classify", len(body)) + body[:100])
        stop = threading.Event()

        def trickle() -> None:
            for sent in range(100, len(body) - 1):
                if stop.wait(0.2):
                    return
                for sock in slow:
                    sock.sendall(body[sent : sent + 1])

        trickler = threading.Thread(target=trickle)
        trickler.start()
        try:
            time.sleep(0.5)
            start = time.monotonic()
            response = httpx.post(
                f"{base}/v1/ecg:classify", content=body, headers={"content-type": "application/json"}, timeout=WAIT
            )
            took = time.monotonic() - start
            # the slow uploads are still being received: neither answered nor closed
            assert not any(_closed_within(sock, 0.1) for sock in slow)
        finally:
            stop.set()
            trickler.join()
        assert response.status_code == 200, response.text
        assert response.json()["summary"]["beats"] > 0
        assert took < 10.0


def test_bodies_beyond_the_upload_budget_get_503_naming_the_bytes_in_transit(bundle_dir, tmp_path):
    body = _strip()  # about 21 kB
    limits = dict(max_body_bytes=32_768, max_receiving_bytes=40_000, header_timeout=30, body_timeout=30)
    with running_server(tmp_path / "server.log", model_dir=bundle_dir, **limits) as base, ExitStack() as stack:
        held = stack.enter_context(_connect(base))
        held.sendall(_head("/v1/ecg:classify", len(body)) + body[:-1])  # all but its last byte
        time.sleep(0.3)
        refused = httpx.post(
            f"{base}/v1/ecg:classify", content=body, headers={"content-type": "application/json"}, timeout=WAIT
        )
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == "overloaded" and refused.headers["retry-after"] == "1"
        assert "being received" in refused.json()["message"], refused.json()
        assert httpx.get(f"{base}/health", timeout=5).status_code == 200
        held.sendall(body[-1:])  # the held upload completes and is scored
        assert _one_response(held).startswith(b"HTTP/1.1 200")
        # its bytes were given back: a new strip is received and scored
        again = httpx.post(
            f"{base}/v1/ecg:classify", content=body, headers={"content-type": "application/json"}, timeout=WAIT
        )
        assert again.status_code == 200, again.text


def test_idle_keep_alive_connections_make_room_and_are_closed_after_the_idle_timeout(bundle_dir, tmp_path):
    limits = dict(max_connections=4, keep_alive_timeout=4, header_timeout=30, body_timeout=30)
    with running_server(tmp_path / "server.log", model_dir=bundle_dir, **limits) as base, ExitStack() as stack:
        # a request whose body is still coming: a working connection, never evicted for an idle one
        working = stack.enter_context(_connect(base))
        working.sendall(_head("/v1/beats:classify", 1000) + b"{")
        idle: list[tuple[socket.socket, bytes, float]] = []
        for _ in range(6):  # more than the cap, each quiet after one GET /health
            sock = stack.enter_context(_connect(base))
            idle.append((sock, _get(sock, "/health"), time.monotonic()))
        assert [reply[:12] for _, reply, _ in idle] == [b"HTTP/1.1 200"] * 6
        with _connect(base) as fresh:
            assert _get(fresh, "/health").startswith(b"HTTP/1.1 200")
        # room was made at once, by eviction: no idle connection had reached its idle timeout yet
        assert time.monotonic() - idle[0][2] < 4
        evicted = [_closed_within(sock, 0.2) for sock, _, _ in idle]
        assert evicted[0] and not evicted[-1], evicted  # the oldest idle first; the newest still open
        assert not _closed_within(working, 0.2)
        # the idle connections left are closed after the idle timeout (nothing sent on them)
        sock, _, answered = idle[-1]
        assert _closed_within(sock, 4 + WAIT)
        assert 4 - 0.5 <= time.monotonic() - answered < 4 + WAIT


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


def test_a_shutdown_with_uploads_in_flight_logs_one_line_for_each_and_tells_them_to_retry(bundle_dir, tmp_path):
    log = tmp_path / "server.log"
    body = _strip()
    with ExitStack() as stack:
        proc, base = stack.enter_context(
            serving_process(log, model_dir=bundle_dir, body_timeout=600, shutdown_timeout=1)
        )
        uploads = [stack.enter_context(_connect(base)) for _ in range(3)]
        for sock in uploads:
            sock.sendall(_head("/v1/ecg:classify", len(body)) + body[:1000])  # bodies still arriving
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        replies = [_read_all(sock) for sock in uploads]
        proc.wait(timeout=WAIT)
    text = log.read_text()
    assert "Traceback" not in text and "CancelledError" not in text, text
    cancelled = [line for line in text.splitlines() if "cancelled while its body was arriving" in line]
    assert len(cancelled) == 3, text
    assert all(f"(1000 of {len(body)} bytes received)" in line for line in cancelled), cancelled
    for reply in replies:
        assert reply.startswith(b"HTTP/1.1 503"), reply[:80]
        assert b'"error": "shutting_down"' in reply and b"retry-after: 1" in reply.lower()


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
    body = _long_strip()
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
