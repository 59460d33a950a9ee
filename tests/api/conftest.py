"""Fixtures for the service and batch tests: a small bundle trained on the fixture beats, an
in-process app, and a real uvicorn server on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from hypothesis.configuration import set_hypothesis_home_dir

from ecgbeats.modelling.bundle import save_bundle
from ecgbeats.serving.api import create_app
from ecgbeats.serving.settings import Settings
from tests.conftest import ROOT
from tests.model.conftest import bundle_meta, fixture_model, fixture_split  # noqa: F401 (fixtures)

STARTUP_SECONDS = 60.0

# hypothesis keeps a cache in ./.hypothesis by default; keep the work tree clean
set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "ecgbeats-hypothesis"))


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory, fixture_model) -> Path:  # noqa: F811
    booster, groups, columns = fixture_model
    path = tmp_path_factory.mktemp("serving") / "bundle"
    meta = bundle_meta(groups, columns)
    meta["provenance"] = {"ecgbeats_version": "0.1.0", "params": {"train": {"seed": 0}}}
    meta["validation"] = {"macro_f1": 0.5}
    save_bundle(path, booster, meta)
    return path


@pytest.fixture(scope="session")
def scorer(bundle_dir):
    from ecgbeats.modelling.bundle import load_bundle
    from ecgbeats.serving.scoring import Scorer

    return Scorer(load_bundle(bundle_dir))


@pytest.fixture(scope="session")
def drift_bundle(tmp_path_factory, fixture_model, fixture_split) -> Path:  # noqa: F811
    """The fixture model with a reference profile of its training split (drift gauges enabled)."""
    from ecgbeats.features.groups import build_features
    from ecgbeats.modelling.model import predict_proba
    from ecgbeats.operations import drift

    booster, groups, columns = fixture_model
    train, _ = fixture_split
    predicted = predict_proba(booster, build_features(train, groups)).argmax(axis=1)
    reference = drift.build_profile(train, predicted, list("NSVFQ"))
    path = tmp_path_factory.mktemp("drift") / "bundle"
    save_bundle(path, booster, bundle_meta(groups, columns), reference=reference)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(**settings: object) -> dict[str, str]:
    settings.setdefault("auth", "off")  # access control has its own tests (test_access.py)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECGBEATS_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update({f"ECGBEATS_{k.upper()}": str(v) for k, v in settings.items()})
    return env


@contextmanager
def serving_process(log: Path, **settings: object) -> Iterator[tuple[subprocess.Popen, str]]:
    """``python -m ecgbeats.serving`` (uvicorn) on 127.0.0.1:<free port> with ``settings``, once ready:
    yields the process and its URL; stops it afterwards if it is still running."""
    port = free_port()
    env = server_env(**settings)
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ecgbeats.serving", "--port", str(port), "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server was not ready within {STARTUP_SECONDS} s:\n{log.read_text()}")
            time.sleep(0.2)
        yield proc, base
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


@contextmanager
def running_server(log: Path, **settings: object) -> Iterator[str]:
    """As :func:`serving_process`; yields the URL only."""
    with serving_process(log, **settings) as (_, base):
        yield base


@pytest.fixture(scope="session")
def live_server(bundle_dir, tmp_path_factory) -> Iterator[str]:
    """The fixture beat-row bundle served by a real uvicorn on loopback; yields its base URL."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    metrics = tmp_path_factory.mktemp("metrics") / "test.json"
    metrics.write_text('{"macro_f1": 0.42}\n')
    with running_server(
        log, model_dir=bundle_dir, max_batch_beats=64, max_body_bytes=3_000_000, test_metrics=metrics
    ) as base:
        yield base


SMALL_LIMITS = dict(
    max_batch_beats=8, max_body_bytes=200_000, min_fs=50, max_fs=500, min_strip_seconds=2, max_strip_seconds=20
)


@pytest.fixture(scope="session")
def small_settings(bundle_dir) -> Settings:
    return Settings(model_dir=bundle_dir, auth="off", **SMALL_LIMITS)


@pytest.fixture(scope="session")
def client(small_settings):
    """The app in process (for the fuzzing: thousands of requests), with small limits."""
    from fastapi.testclient import TestClient

    with TestClient(create_app(small_settings), raise_server_exceptions=False) as test_client:
        yield test_client
