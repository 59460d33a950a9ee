"""A strip worker that dies (an out-of-memory kill, a native crash) is replaced: the strip in flight gets
a 503 in the API's error format, /ready says not ready meanwhile, and strips are scored again after."""

from __future__ import annotations

import time

import httpx
import psutil
import pytest

from ecgbeats.data.dataset import read_record_signals
from tests.api.conftest import serving_process
from tests.api.test_record_model import record_bundle  # noqa: F401 (fixture: a record bundle on the fixtures)
from tests.conftest import FIXTURE_MIRROR

pytestmark = pytest.mark.slow


def strip_workers(pid: int) -> list[psutil.Process]:
    return [p for p in psutil.Process(pid).children(recursive=True) if "spawn_main" in " ".join(p.cmdline())]


def test_a_killed_strip_worker_is_replaced(record_bundle, tmp_path):  # noqa: F811
    rec = read_record_signals(FIXTURE_MIRROR, "213")
    body = {"fs": rec.fs, "signal": rec.signal[: int(60 * rec.fs), 0].tolist()}
    with serving_process(tmp_path / "server.log", model_dir=record_bundle, strip_workers=1) as (proc, base):
        assert httpx.post(f"{base}/v1/ecg:classify", json=body, timeout=60).status_code == 200
        (worker,) = strip_workers(proc.pid)
        worker.kill()  # as the kernel's out-of-memory killer would
        worker.wait(10)
        answers = [httpx.post(f"{base}/v1/ecg:classify", json=body, timeout=60)]
        lost = answers[0]
        assert lost.status_code == 503, lost.text
        assert lost.json()["error"] == "worker_lost" and "Retry-After" in lost.headers
        ready = [httpx.get(f"{base}/ready", timeout=10).status_code]
        deadline = time.monotonic() + 60
        while answers[-1].status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
            ready.append(httpx.get(f"{base}/ready", timeout=10).status_code)
            answers.append(httpx.post(f"{base}/v1/ecg:classify", json=body, timeout=60))
        assert answers[-1].status_code == 200, answers[-1].text
        assert {a.status_code for a in answers} <= {200, 503}  # never a plain 500
        assert ready[0] == 503, ready  # not ready while the new worker starts
        assert httpx.get(f"{base}/ready", timeout=10).status_code == 200
        assert len(strip_workers(proc.pid)) == 1  # a new worker, not the dead one
        assert strip_workers(proc.pid)[0].pid != worker.pid
        assert httpx.get(f"{base}/health", timeout=10).status_code == 200
