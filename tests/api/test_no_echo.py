"""Responses never echo a large input, and the model endpoint shows no server paths or OS errors."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from ecgbeats.serving.api import MAX_ECHO, create_app
from ecgbeats.serving.settings import Settings


def test_an_unknown_huge_key_is_not_echoed(bundle_dir):
    key = "k" * 8_000_000
    body = '{"beats": [{"samples": [0.5], "' + key + '": 1}]}'
    settings = Settings(auth="off", model_dir=bundle_dir, max_body_bytes=16_000_000)
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/beats:classify", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert len(response.content) < 4 * MAX_ECHO + 2_000, len(response.content)
    fields = [e["field"] for e in response.json()["errors"]]
    assert any(f.endswith(" characters)") and len(f) < 2 * MAX_ECHO for f in fields), fields


def test_the_model_endpoint_shows_no_paths_or_os_errors(bundle_dir, tmp_path):
    good = tmp_path / "secret-dir" / "test.json"
    good.parent.mkdir()
    good.write_text('{"macro_f1": 0.5}')
    for path, expected in ((good, {"macro_f1": 0.5}), (tmp_path / "secret-dir" / "missing.json", None)):
        with TestClient(create_app(Settings(auth="off", model_dir=bundle_dir, test_metrics=path))) as client:
            info = client.get("/v1/model").json()
        text = json.dumps(info)
        assert str(tmp_path) not in text and "secret-dir" not in text and "Errno" not in text
        assert info["test"]["source"] == path.name
        assert info["test"].get("metrics") == expected
