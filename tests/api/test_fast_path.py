"""The one-beat fast path: features from arrays, JSON straight to arrays, .npy bodies.

It must change no result: the array features equal ``build_features`` bit for bit, the service's
probabilities equal ``Scorer.score_beats`` on the beat table (the batch path) to 1e-9, the JSON parser
accepts exactly what the request model accepts, and the drift window sees every scored beat.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from ecgbeats.data.dataset import SAMPLE_COLUMNS
from ecgbeats.features.groups import build_features
from ecgbeats.modelling.bundle import load_bundle, save_bundle
from ecgbeats.operations import drift
from ecgbeats.serving import beat_arrays
from ecgbeats.serving.api import create_app, request_models
from ecgbeats.serving.beat_input import NPY_TYPE, json_beats
from ecgbeats.serving.scoring import Scorer, beat_frame
from ecgbeats.serving.scoring import beat_arrays as to_arrays
from ecgbeats.serving.settings import Settings
from tests.api.conftest import running_server
from tests.conftest import ROOT
from tests.model.conftest import bundle_meta

BEATS = "/v1/beats:classify"
ALL_GROUPS = ["samples", "samples_masked", "downsampled", "length", "rr", "rr_norm", "morphology"]
RR = ("rr_prev", "rr_next", "rr_local")
INTERPATIENT = ROOT / "models" / "interpatient"


def arrays_of(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    samples = frame[SAMPLE_COLUMNS].to_numpy(dtype=np.float64)
    lengths = frame["length"].to_numpy(dtype=np.float64)
    rr = {c: frame[c].to_numpy(dtype=np.float64) for c in RR}
    return samples, lengths, rr


def table(samples: np.ndarray, lengths: np.ndarray, rr: dict[str, np.ndarray]) -> pd.DataFrame:
    return beat_frame(samples, lengths=lengths, rr=rr)


@pytest.fixture(scope="module")
def all_groups_bundle(fixture_split, tmp_path_factory) -> Path:
    """A small model on every feature group the array path implements, with a drift reference."""
    train, _ = fixture_split
    features = build_features(train, ALL_GROUPS)
    params = {"objective": "multiclass", "num_class": 5, "num_leaves": 7, "verbose": -1, "num_threads": 1}
    booster = lgb.train(params, lgb.Dataset(features, train["label"].to_numpy()), num_boost_round=15)
    predicted = np.asarray(booster.predict(features.to_numpy(dtype=np.float64))).argmax(axis=1)
    path = tmp_path_factory.mktemp("fast") / "bundle"
    reference = drift.build_profile(train, predicted, list("NSVFQ"))
    save_bundle(path, booster, bundle_meta(ALL_GROUPS, list(features.columns)), reference=reference)
    return path


@pytest.fixture(scope="module")
def fixture_arrays(fixture_beats):
    return arrays_of(fixture_beats)


def test_array_features_equal_build_features_bit_for_bit(fixture_arrays):
    samples, lengths, rr = fixture_arrays
    check = beat_arrays.check_beats()
    columns = list(
        build_features(table(samples[:5], lengths[:5], {c: v[:5] for c, v in rr.items()}), ALL_GROUPS).columns
    )
    fast = beat_arrays.array_features(ALL_GROUPS, columns)
    assert fast is not None, "the start-up comparison on the check beats failed"
    frame = table(samples, lengths, rr)
    expected = build_features(frame, ALL_GROUPS).reindex(columns=columns).to_numpy(dtype=np.float64)
    got = fast(*to_arrays(samples, lengths=lengths, rr=rr)).astype(np.float64)
    assert np.array_equal(expected, got, equal_nan=True)
    assert len(check[0]) == beat_arrays.CHECK_BEATS


def test_a_difference_from_build_features_turns_the_array_path_off(monkeypatch, caplog):
    def wrong_length(samples, length, rr):
        return ["length"], (length + 1).astype(np.float32)[:, None]

    monkeypatch.setitem(beat_arrays.GROUPS, "length", wrong_length)
    assert beat_arrays.array_features(["samples", "length"], [*SAMPLE_COLUMNS, "length"]) is None
    assert "differ from build_features in 1 column(s) (e.g. length)" in caplog.text
    assert beat_arrays.array_features(["samples", "tsfresh"], SAMPLE_COLUMNS) is None  # no array form


def test_score_arrays_gives_the_batch_path_probabilities(all_groups_bundle, fixture_arrays):
    scorer = Scorer(load_bundle(all_groups_bundle), num_threads=1)
    assert scorer.array_features is not None
    samples, lengths, rr = fixture_arrays
    batch = scorer.score_beats(table(samples, lengths, rr)).probabilities
    fast = scorer.score_arrays(samples, lengths=lengths, rr=rr).probabilities
    np.testing.assert_allclose(fast, batch, rtol=0, atol=1e-9)
    one = np.vstack([scorer.score_arrays(samples[i : i + 1], lengths=lengths[i : i + 1],
                                         rr={c: v[i : i + 1] for c, v in rr.items()}).probabilities
                     for i in range(0, len(samples), 97)])  # fmt: skip
    np.testing.assert_allclose(one, batch[::97], rtol=0, atol=1e-9)


@pytest.mark.skipif(not (INTERPATIENT / "model.txt").is_file(), reason="models/interpatient is not checked out")
def test_score_arrays_on_the_interpatient_bundle(fixture_arrays):
    scorer = Scorer(load_bundle(INTERPATIENT), num_threads=1)
    assert scorer.array_features is not None, "the interpatient bundle must have the array path"
    samples, lengths, rr = fixture_arrays
    batch = scorer.score_beats(table(samples, lengths, rr)).probabilities
    np.testing.assert_allclose(scorer.score_arrays(samples, lengths=lengths, rr=rr).probabilities, batch, atol=1e-9)


def payload(samples: np.ndarray, lengths: np.ndarray, rr: dict[str, np.ndarray], rows) -> list[dict]:
    out = []
    for i in rows:
        beat: dict = {"samples": samples[i].tolist(), "length": int(lengths[i])}
        beat |= {c: float(rr[c][i]) for c in RR if 0 < rr[c][i] <= 10}
        out.append(beat)
    return out


def npy_body(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def npy_rows(samples, lengths, rr, rows, dtype=np.float32) -> np.ndarray:
    known = {c: np.where((rr[c] > 0) & (rr[c] <= 10), rr[c], np.nan) for c in RR}
    return np.column_stack([samples[rows], lengths[rows], *(known[c][rows] for c in RR)]).astype(dtype)


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_live_json_and_npy_give_the_batch_path_probabilities(all_groups_bundle, fixture_arrays, tmp_path):
    import httpx

    samples, lengths, rr = fixture_arrays
    scorer = Scorer(load_bundle(all_groups_bundle), num_threads=1)
    rows = list(range(0, len(samples), 7))[:60]
    # the reference: the batch path on the values a client sends (RR outside the rules left out)
    known = {c: np.where((rr[c] > 0) & (rr[c] <= 10), rr[c], np.nan) for c in RR}
    expected = scorer.score_beats(table(samples[rows], lengths[rows], {c: v[rows] for c, v in known.items()}))
    log = tmp_path / "server.log"
    with (
        running_server(log, model_dir=all_groups_bundle, max_batch_beats=64) as base,
        httpx.Client(base_url=base, timeout=30) as http,
    ):
        answers = {
            "json, one request": http.post(BEATS, json={"beats": payload(samples, lengths, rr, rows)}).json(),
            "npy float32": http.post(
                BEATS, content=npy_body(npy_rows(samples, lengths, rr, rows)), headers={"content-type": NPY_TYPE}
            ).json(),
            "npy float64": http.post(
                BEATS,
                content=npy_body(npy_rows(samples, lengths, rr, rows, np.float64)),
                headers={"content-type": NPY_TYPE},
            ).json(),
        }
        singles = [http.post(BEATS, json={"beats": payload(samples, lengths, rr, [i])}).json() for i in rows[:10]]
        metrics = http.get("/metrics").text
    for name, answer in answers.items():
        got = np.array([[p["probabilities"][c] for c in "NSVFQ"] for p in answer["predictions"]])
        np.testing.assert_allclose(got, expected.probabilities, rtol=0, atol=1e-9, err_msg=name)
        assert [p["class_name"] for p in answer["predictions"]] == expected.names, name
        assert [p["index"] for p in answer["predictions"]] == list(range(len(rows)))
    one = np.array([[s["predictions"][0]["probabilities"][c] for c in "NSVFQ"] for s in singles])
    np.testing.assert_allclose(one, expected.probabilities[:10], rtol=0, atol=1e-9)
    assert singles[0]["model"] == {"version": scorer.version, "digest": scorer.digest}
    # the drift window and the class counters saw every scored beat, by either request type
    scored = 3 * len(rows) + 10
    assert _metric(metrics, "ecgbeats_drift_window_beats") == min(scored, 2000)
    counted = sum(float(v) for v in re.findall(r"^ecgbeats_predicted_beats_total\{[^}]*\} (\S+)$", metrics, re.M))
    assert counted == scored


@pytest.fixture(scope="module")
def fast_client(all_groups_bundle):
    with TestClient(create_app(Settings(model_dir=all_groups_bundle, auth="off", max_batch_beats=8))) as client:
        yield client


def test_the_response_matches_the_documented_model(fast_client, fixture_arrays):
    samples, lengths, rr = fixture_arrays
    body = fast_client.post(BEATS, json={"beats": payload(samples, lengths, rr, [0, 1])}).json()
    from ecgbeats.serving.api import BeatsResponse

    assert BeatsResponse.model_validate(body).model_dump(mode="json") == body
    spec = fast_client.get("/openapi.json").json()["paths"][BEATS]["post"]
    content = spec["requestBody"]["content"]
    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/BeatsRequest"}
    assert content[NPY_TYPE]["schema"]["format"] == "binary"
    assert "(n, 191)" in spec["description"]


def _valid(n: int = 2) -> dict:
    return {"beats": [{"samples": [0.0] + [0.5] * 100 + [0.0] * 86, "rr_prev": 0.8, "length": 101} for _ in range(n)]}


def _variants() -> list[bytes]:
    """Bodies near the edge of the rules: each either valid or not, to the request model."""
    out = []
    for change in [
        lambda b: b,
        lambda b: b["beats"][0].update(samples=[0, 1] + [0] * 185),  # integers are numbers
        lambda b: b["beats"][0].update(samples=[True] + [0.5] * 186),
        lambda b: b["beats"][0].update(samples=["0.5"] + [0.5] * 186),
        lambda b: b["beats"][0].update(samples=[None] + [0.5] * 186),
        lambda b: b["beats"][0].update(samples=[1e300] + [0.5] * 186),
        lambda b: b["beats"][0].update(samples=[10**400] + [0.5] * 186),
        lambda b: b["beats"][0].update(samples=[-1e-6] + [1 + 1e-6] * 186),  # the tolerance itself
        lambda b: b["beats"][0].update(samples=[-2e-6] + [0.5] * 186),
        lambda b: b["beats"][0].update(samples=[0.5] * 187),  # constant: not a beat
        lambda b: b["beats"][0].update(samples=[[0.5]] * 187),
        lambda b: b["beats"][0].update(samples=[0.5] * 186),
        lambda b: b["beats"][0].update(length=101.0),
        lambda b: b["beats"][0].update(length=True),
        lambda b: b["beats"][0].update(length=2001),
        lambda b: b["beats"][0].update(length=None, rr_next=None),
        lambda b: b["beats"][0].update(rr_prev=0),
        lambda b: b["beats"][0].update(rr_prev=10),
        lambda b: b["beats"][0].update(rr_prev=10.000001),
        lambda b: b["beats"][0].update(rr_local="1"),
        lambda b: b["beats"][0].update(extra=1),
        lambda b: b["beats"][0].pop("samples"),
        lambda b: b.update(more=1),
        lambda b: b.update(beats=[]),
        lambda b: b.update(beats=b["beats"] * 5),  # over max_batch_beats
        lambda b: b.update(beats={"0": 1}),
    ]:
        body = _valid()
        change(body)
        out.append(json.dumps(body).encode())
    return [
        *out,
        b"",
        b"null",
        b"[]",
        b'{"beats": [NaN]}',
        b"\xff\xfe",
        b'{"beats": [{"samples": [NaN' + b", 0.5" * 186 + b"]}]}",
    ]


@pytest.mark.parametrize("body", _variants())
def test_json_fast_parse_accepts_exactly_what_the_request_model_accepts(body):
    model, _ = request_models(Settings(auth="off", max_batch_beats=8))
    try:
        parsed = model.model_validate(json.loads(body))
    except (ValueError, ValidationError):
        parsed = None
    fast = json_beats(body, 8)
    if parsed is None:
        assert fast is None, "the fast parser accepted a body the request model refuses"
        return
    if fast is None:  # a valid body the fast parser leaves to the model is allowed (it is then slower)
        return
    beats = parsed.beats  # type: ignore[attr-defined]
    np.testing.assert_array_equal(fast.samples, np.array([b.samples for b in beats], dtype=np.float64))
    np.testing.assert_array_equal(fast.lengths, [np.nan if b.length is None else b.length for b in beats])
    for c in RR:
        np.testing.assert_array_equal(fast.rr[c], [np.nan if getattr(b, c) is None else getattr(b, c) for b in beats])


def test_valid_json_takes_the_fast_path(monkeypatch, fast_client):
    from ecgbeats.serving import api

    calls = []
    monkeypatch.setattr(api, "json_beats", lambda body, n: calls.append(n) or None)  # declines: the model path
    response = fast_client.post(BEATS, json=_valid())
    assert response.status_code == 200 and calls == [8]
    assert json_beats(json.dumps(_valid()).encode(), 8) is not None


@pytest.mark.parametrize(
    ("array", "field", "status"),
    [
        (np.full((2, 187), 0.5, dtype=np.float32), "beats[0].samples", 422),  # constant rows
        (np.zeros((9, 187), dtype=np.float32), "beats", 422),  # over max_batch_beats
        (np.zeros((2, 100), dtype=np.float32), "body", 422),
        (np.zeros((2, 187), dtype=np.int64), "body", 422),
        (np.zeros((2, 187, 1), dtype=np.float32), "body", 422),
    ],
)
def test_npy_errors_name_the_field(fast_client, array, field, status):
    response = fast_client.post(BEATS, content=npy_body(array), headers={"content-type": NPY_TYPE})
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == "invalid_input" and body["errors"][0]["field"] == field, body


def test_npy_value_errors_name_row_and_column(fast_client):
    rows = np.tile(np.r_[[0.0], np.full(100, 0.5), np.zeros(86), [np.nan] * 4], (3, 1)).astype(np.float32)
    rows[1, 5] = np.nan
    rows[2, 7] = 1.5
    rows[2, 188] = 11.0  # rr_prev
    rows[0, 187] = 2.5  # length
    response = fast_client.post(BEATS, content=npy_body(rows), headers={"content-type": NPY_TYPE})
    assert response.status_code == 422
    fields = [e["field"] for e in response.json()["errors"]]
    assert fields == ["beats[0].length", "beats[1].samples[5]", "beats[2].samples[7]", "beats[2].rr_prev"]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x93NUMPY",
        b"PK\x03\x04 an npz",
        npy_body(np.zeros((2, 187), dtype=np.float32))[:-8],  # truncated data
        npy_body(np.array([{"x": 1}], dtype=object), allow_pickle=True),  # a pickle: never loaded
        # a header announcing a huge array: refused before anything is allocated
        npy_body(np.zeros((1, 187), dtype=np.float32)).replace(b"(1, 187)", b"(99999999999, 187)"),
    ],
)
def test_bad_npy_bodies_are_a_422_on_the_body(fast_client, body):
    response = fast_client.post(BEATS, content=body, headers={"content-type": NPY_TYPE})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] in {"body", "beats"}
