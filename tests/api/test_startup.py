"""The service verifies its bundle at start and refuses a missing or tampered one."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from ecgbeats.modelling.bundle import MODEL_FILE, BundleError
from ecgbeats.serving.api import create_app
from ecgbeats.serving.settings import Settings
from tests.api.conftest import free_port, server_env
from tests.conftest import ROOT


@pytest.fixture
def tampered(tmp_path, bundle_dir):
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    text = (copy / MODEL_FILE).read_text()
    (copy / MODEL_FILE).write_text(text.replace("learning_rate", "learning_rate ", 1))
    return copy


def test_lifespan_refuses_a_tampered_bundle(tampered):
    with (
        pytest.raises(BundleError, match=r"model\.txt has sha256"),
        TestClient(create_app(Settings(auth="off", model_dir=tampered))),
    ):
        pass


@pytest.mark.parametrize("case", ["missing", "tampered"])
def test_the_server_command_refuses_to_start(case, tmp_path, tampered):
    model_dir = tampered if case == "tampered" else tmp_path / "nothing"
    result = subprocess.run(
        [sys.executable, "-m", "ecgbeats.serving", "--port", str(free_port())],
        cwd=ROOT, env=server_env(model_dir=model_dir), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    expected = "has sha256" if case == "tampered" else "does not exist"
    assert "refusing to start" in result.stderr and expected in result.stderr


def test_plain_uvicorn_factory_also_refuses(tampered):
    """Started as `uvicorn --factory`, the lifespan check stops the server (uvicorn exits 3)."""
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "--factory", "ecgbeats.serving.api:app_from_env",
         "--host", "127.0.0.1", "--port", str(free_port())],
        cwd=ROOT, env=server_env(model_dir=tampered), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "refusing to start" in result.stderr and "has sha256" in result.stderr
    assert "Application startup failed" in result.stderr
