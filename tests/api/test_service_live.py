"""The main paths through a real uvicorn server on a loopback port."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
import wfdb

from ecgbeats.data.dataset import SAMPLE_COLUMNS
from tests.conftest import FIXTURE_MIRROR


@pytest.fixture(scope="module")
def http(live_server):
    with httpx.Client(base_url=live_server, timeout=30) as client:
        yield client


def test_health_ready_and_openapi(http, scorer):
    assert http.get("/health").json() == {"status": "ok"}
    ready = http.get("/ready").json()
    assert ready == {"status": "ready", "model_version": scorer.version, "model_digest": scorer.digest}
    paths = http.get("/openapi.json").json()["paths"]
    assert {"/v1/beats:classify", "/v1/ecg:classify", "/v1/model", "/health", "/ready", "/metrics"} <= set(paths)


def test_the_openapi_declares_metrics_as_the_text_it_serves(http):
    declared = http.get("/openapi.json").json()["paths"]["/metrics"]["get"]["responses"]["200"]
    assert declared["content"] == {"text/plain": {"schema": {"type": "string"}}}
    assert "Prometheus" in declared["description"]
    served = http.get("/metrics")
    assert served.headers["content-type"].startswith("text/plain")
    assert served.text.startswith("# HELP")


def test_model_reports_version_provenance_and_metrics(http, scorer, bundle_dir):
    model = http.get("/v1/model").json()
    assert model["version"] == scorer.version
    assert model["version"].startswith("0.1.0+fixture.") and model["digest"].startswith(model["version"][-12:])
    assert model["provenance"]["params"] == {"train": {"seed": 0}}
    assert model["preprocessing"] == {
        "local_rr_beats": 10,
        "beat_end": "next_beat",
        "beat_fs": 120.0,
        "beat_samples": 187,
        "source_fs": 360,
    }
    assert model["validation"] == {"macro_f1": 0.5}
    assert model["test"]["metrics"] == {"macro_f1": 0.42}
    assert [c["name"] for c in model["classes"]] == ["N", "S", "V", "F", "Q"]
    assert model["limits"]["max_batch_beats"] == 64
    assert model["limits"]["header_timeout_s"] == 10 and model["limits"]["max_queued"] == 8


def test_classify_beats_matches_the_bundle(http, scorer, fixture_beats):
    rows = fixture_beats.groupby("label").head(4).reset_index(drop=True)
    beats = []
    for i, row in rows.iterrows():
        beat = {"samples": row[SAMPLE_COLUMNS].astype(float).tolist(), "length": int(row["length"])}
        if i % 2 == 0:  # half with RR intervals, half without
            beat |= {c: float(row[c]) for c in ("rr_prev", "rr_next", "rr_local") if np.isfinite(row[c])}
        beats.append(beat)
    response = http.post("/v1/beats:classify", json={"beats": beats})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == {"version": scorer.version, "digest": scorer.digest}
    expected = rows.copy()
    expected.loc[expected.index % 2 == 1, ["rr_prev", "rr_next", "rr_local"]] = np.nan
    proba = scorer.bundle.predict_proba(expected)
    got = np.array([[p["probabilities"][n] for n in "NSVFQ"] for p in body["predictions"]])
    np.testing.assert_allclose(got, proba, rtol=1e-6)
    assert [p["class_code"] for p in body["predictions"]] == list(proba.argmax(axis=1))
    assert [p["class_name"] for p in body["predictions"]] == ["NSVFQ"[c] for c in proba.argmax(axis=1)]
    assert np.allclose(got.sum(axis=1), 1)


def test_classify_ecg_strip_from_a_fixture_record(http, scorer):
    record = wfdb.rdrecord(str(FIXTURE_MIRROR / "213"), channels=[0], sampto=360 * 60)
    response = http.post("/v1/ecg:classify", json={"fs": record.fs, "signal": record.p_signal[:, 0].tolist()})
    assert response.status_code == 200, response.text
    body = response.json()
    summary = body["summary"]
    assert summary["duration_s"] == pytest.approx(60)
    assert summary["beats"] == len(body["beats"]) == summary["detected_r_peaks"] - 1
    assert sum(summary["counts"].values()) == summary["beats"]
    assert 60 < summary["mean_heart_rate_bpm"] < 140  # record 213 runs at about 110 beats/min
    times = [b["time_s"] for b in body["beats"]]
    assert times == sorted(times) and times[0] >= 0 and times[-1] < 60
    assert body["beats"][0]["rr_prev_s"] is None and body["beats"][1]["rr_prev_s"] > 0


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/beats:classify", '{"beats": [{"samples": [NaN]}]}', "beats[0].samples[0]"),
        ("/v1/beats:classify", json.dumps({"beats": [{"samples": [0.5] * 186}]}), "beats[0].samples"),
        ("/v1/beats:classify", json.dumps({"beats": [{"samples": [0.5] * 186 + [1.5]}]}), "beats[0].samples[186]"),
        ("/v1/beats:classify", json.dumps({"beats": []}), "beats"),
        ("/v1/beats:classify", json.dumps({"beats": [{"samples": [0.0] * 187}]}), "beats[0].samples"),  # not a beat
        ("/v1/beats:classify", json.dumps({"beats": [{"samples": [0.0] * 187}] * 65}), "beats"),
        ("/v1/ecg:classify", json.dumps({"fs": 5000, "signal": [0.0] * 4000}), "fs"),
        ("/v1/ecg:classify", '{"fs": 360, "signal": [Infinity]}', "signal[0]"),
        ("/v1/ecg:classify", json.dumps({"fs": 360, "signal": [0.0] * 3600}), "signal"),  # flat: no R peaks
    ],
)
def test_bad_input_is_a_4xx_naming_the_field(http, path, body, field):
    response = http.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field


def test_oversized_body_and_wrong_content_type(http):
    too_big = b'{"beats": [' + b"0," * 2_000_000 + b"0]}"
    response = http.post("/v1/beats:classify", content=too_big, headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["errors"][0]["field"] == "body"
    response = http.post("/v1/ecg:classify", content=b"fs=360", headers={"content-type": "text/plain"})
    assert response.status_code == 415 and response.json()["errors"][0]["field"] == "content-type"


def test_metrics_count_requests_predictions_and_rejections(http):
    http.post("/v1/beats:classify", json={"beats": [{"samples": [1.0] + [0.5] * 185 + [0.0]}]})
    http.post("/v1/beats:classify", json={"beats": []})
    text = http.get("/metrics").text
    assert 'http_requests_total{handler="/v1/beats:classify",method="POST",status="2xx"}' in text
    assert "http_request_duration_seconds_bucket" in text
    predicted = [line for line in text.splitlines() if line.startswith("ecgbeats_predicted_beats_total{")]
    assert len(predicted) == 5 and sum(float(line.split()[-1]) for line in predicted) >= 1
    assert 'ecgbeats_rejected_inputs_total{endpoint="/v1/beats:classify",field="beats",reason="validation"}' in text
    assert "ecgbeats_model_loaded 1.0" in text


def _strip_body(signal: np.ndarray) -> dict:
    return {"fs": 360.0, "signal": np.round(signal, 4).tolist()}


def test_strip_quality_noise_is_refused_and_a_noisy_stretch_left_unscored(http):
    rng = np.random.default_rng(3)
    response = http.post("/v1/ecg:classify", json=_strip_body(rng.normal(0, 1.0, 360 * 60)))
    assert response.status_code == 422
    error = response.json()
    assert error["error"] == "unscorable" and error["errors"][0]["field"] == "signal"
    assert "6 noise" in error["message"]

    clean = wfdb.rdrecord(str(FIXTURE_MIRROR / "213"), channels=[0], sampto=360 * 60).p_signal[:, 0]
    noisy = clean.copy()
    noisy[360 * 20 : 360 * 30] = rng.normal(0, 1.0, 3600)
    body = http.post("/v1/ecg:classify", json=_strip_body(noisy)).json()
    quality = body["summary"]["quality"]
    assert quality["unusable"] == [{"start_s": 20.0, "end_s": 30.0, "reason": "noise"}]
    assert quality["unscored_beats"] == len(body["unscored"]) > 0
    assert all(20 <= b["time_s"] < 30 and b["reason"] == "noise" for b in body["unscored"])
    assert all(not 20 <= b["time_s"] < 30 for b in body["beats"])
    assert body["summary"]["beats"] == len(body["beats"])


def test_strip_quality_spikes_are_bridged_and_an_inverted_lead_is_flipped(http):
    clean = wfdb.rdrecord(str(FIXTURE_MIRROR / "213"), channels=[0], sampto=360 * 60).p_signal[:, 0]
    upright = http.post("/v1/ecg:classify", json=_strip_body(clean)).json()
    assert upright["summary"]["quality"]["polarity"] == "upright"

    inverted = http.post("/v1/ecg:classify", json=_strip_body(-clean)).json()
    assert "inverted" in inverted["summary"]["quality"]["polarity"]
    assert inverted["summary"]["quality"]["qrs_down_up_ratio"] > 1.6

    spiked = clean.copy()
    spiked[np.arange(180, len(clean), 360)] += 45.0  # near the 50 mV the service accepts
    body = http.post("/v1/ecg:classify", json=_strip_body(spiked)).json()
    quality = body["summary"]["quality"]
    assert quality["spikes_bridged"] == 60
    # a beat whose QRS falls in a bridged 100 ms is lost: about 10 % at 110 beats/min, one pop a second
    assert body["summary"]["detected_r_peaks"] >= 0.85 * upright["summary"]["detected_r_peaks"]
    assert {b["reason"] for b in body["unscored"]} <= {"spike"}
