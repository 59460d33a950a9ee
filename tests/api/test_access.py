"""Access control against a real server: bearer keys in two scopes, stored hashed, 401/403 with the
usual challenge, drift fed only by authenticated traffic, and a one-line refusal for unusable key files."""

from __future__ import annotations

import subprocess
import sys

import httpx
import numpy as np
import pytest

from ecgbeats.serving.security import hash_key, parse_hashes
from tests.api.conftest import running_server, server_env
from tests.conftest import ROOT

CLIENT_KEY = "client-key-0123456789-abcdefghijklmnopqrstuvwxyz"
SCRAPER_KEY = "scraper-key-0123456789-abcdefghijklmnopqrstuvwxyz"


def _beats(n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    samples = np.clip(rng.normal(0.4, 0.1, size=(n, 187)), 0, 1)
    return {"beats": [{"samples": row.tolist()} for row in samples]}


def _window_beats(base: str) -> float:
    text = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {SCRAPER_KEY}"}).text
    line = next(x for x in text.splitlines() if x.startswith("ecgbeats_drift_window_beats"))
    return float(line.split()[-1])


@pytest.fixture(scope="module")
def guarded_server(drift_bundle, tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    (folder / "client.keys").write_text(f"# clients\n{hash_key(CLIENT_KEY)} alice\n")
    (folder / "metrics.keys").write_text(f"{hash_key(SCRAPER_KEY)} prometheus\n")
    with running_server(
        folder / "server.log", model_dir=drift_bundle, drift_min_beats=10, drift_window=1000, auth="keys",
        api_keys_file=folder / "client.keys", metrics_keys_file=folder / "metrics.keys",
    ) as base:  # fmt: skip
        yield base


def test_probes_are_open_and_everything_else_needs_a_key(guarded_server):
    base = guarded_server
    assert httpx.get(f"{base}/health").status_code == 200
    assert httpx.get(f"{base}/ready").status_code == 200
    for method, path in [("GET", "/v1/model"), ("POST", "/v1/beats:classify"), ("GET", "/metrics"), ("GET", "/docs")]:
        response = httpx.request(method, f"{base}{path}", json=_beats(1) if method == "POST" else None)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == 'Bearer realm="ecgbeats"'
        assert response.json()["errors"][0]["field"] == "authorization"


def test_ready_names_the_model_only_to_a_caller_with_a_key(guarded_server):
    base = guarded_server
    for headers in ({}, {"Authorization": "Bearer guessed"}):
        anonymous = httpx.get(f"{base}/ready", headers=headers)
        assert anonymous.status_code == 200  # what a load balancer needs: the status
        assert anonymous.json() == {"status": "ready"}
    for key in (CLIENT_KEY, SCRAPER_KEY):
        known = httpx.get(f"{base}/ready", headers={"Authorization": f"Bearer {key}"}).json()
        assert known["status"] == "ready"
        assert known["model_version"] and len(known["model_digest"]) == 64


def test_a_wrong_key_is_401_invalid_token_and_a_key_of_the_other_scope_is_403(guarded_server):
    base = guarded_server
    wrong = httpx.get(f"{base}/v1/model", headers={"Authorization": "Bearer not-a-key"})
    assert wrong.status_code == 401
    assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
    basic = httpx.get(f"{base}/v1/model", headers={"Authorization": f"Basic {CLIENT_KEY}"})
    assert basic.status_code == 401
    scraper_classifies = httpx.post(
        f"{base}/v1/beats:classify", json=_beats(1), headers={"Authorization": f"Bearer {SCRAPER_KEY}"}
    )
    assert scraper_classifies.status_code == 403
    assert 'error="insufficient_scope"' in scraper_classifies.headers["www-authenticate"]
    client_scrapes = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {CLIENT_KEY}"})
    assert client_scrapes.status_code == 403


def test_the_right_keys_open_their_endpoints(guarded_server):
    base = guarded_server
    client = {"Authorization": f"Bearer {CLIENT_KEY}"}
    assert httpx.get(f"{base}/v1/model", headers=client).status_code == 200
    response = httpx.post(f"{base}/v1/beats:classify", json=_beats(3), headers=client)
    assert response.status_code == 200 and len(response.json()["predictions"]) == 3
    scraper = {"Authorization": f"Bearer {SCRAPER_KEY}"}
    assert httpx.get(f"{base}/docs", headers=scraper).status_code == 200
    assert "ecgbeats_rejected_inputs_total" in httpx.get(f"{base}/metrics", headers=scraper).text


def test_only_authenticated_beats_reach_the_drift_window(guarded_server):
    base = guarded_server
    before = _window_beats(base)
    for headers in ({}, {"Authorization": "Bearer guessed"}, {"Authorization": f"Bearer {SCRAPER_KEY}"}):
        assert httpx.post(f"{base}/v1/beats:classify", json=_beats(50), headers=headers).status_code in (401, 403)
    assert _window_beats(base) == before
    ok = httpx.post(f"{base}/v1/beats:classify", json=_beats(50), headers={"Authorization": f"Bearer {CLIENT_KEY}"})
    assert ok.status_code == 200
    assert _window_beats(base) == before + 50


def _start(tmp_path, **settings) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ecgbeats.serving", "--port", "1"],
        cwd=ROOT, env=server_env(**settings), capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_server_refuses_to_start_without_keys_or_with_a_raw_key_in_the_file(tmp_path, bundle_dir):
    no_keys = _start(tmp_path, model_dir=bundle_dir, auth="keys")
    assert no_keys.returncode == 2
    assert no_keys.stderr.strip().count("\n") == 0
    assert "ECGBEATS_AUTH=off" in no_keys.stderr
    raw = tmp_path / "raw.keys"
    raw.write_text(f"{hash_key(CLIENT_KEY)}\n{CLIENT_KEY}\n")  # the key itself on line 2, not its hash
    leaked = _start(tmp_path, model_dir=bundle_dir, auth="keys", api_keys_file=raw)
    assert leaked.returncode == 2
    assert leaked.stderr.strip().count("\n") == 0
    assert "entry 2" in leaked.stderr and CLIENT_KEY not in leaked.stderr
    missing = _start(tmp_path, model_dir=bundle_dir, auth="keys", api_keys_file=tmp_path / "absent.keys")
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_the_key_maker_prints_a_key_and_the_line_that_opens_it():
    made = subprocess.run(
        [sys.executable, "-m", "ecgbeats.serving.security", "--name", "ward-7"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    key = made.stdout.strip()
    assert len(key) >= 40
    hashes = parse_hashes(made.stderr, "stderr")
    assert hashes == {hash_key(key).removeprefix("sha256:"): "ward-7"}
