"""Property-based fuzzing: no input, however malformed, gives a 5xx; every rejection is a JSON 4xx
naming a field. In process (TestClient) for speed, with the small limits of ``SMALL_LIMITS``."""

from __future__ import annotations

import json
import math
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.conftest import SMALL_LIMITS

BEATS = "/v1/beats:classify"
ECG = "/v1/ecg:classify"
# modest by default so the suite stays fast; ECGBEATS_FUZZ_EXAMPLES=2000 for a longer local run
FUZZ = settings(
    max_examples=int(os.environ.get("ECGBEATS_FUZZ_EXAMPLES", "60")),
    deadline=None,
    database=None,  # no .hypothesis/ directory in the work tree
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
JSON = {"content-type": "application/json"}

finite = st.floats(allow_nan=False, allow_infinity=False)
any_float = st.floats(allow_nan=True, allow_infinity=True)
json_values = st.recursive(
    st.none() | st.booleans() | any_float | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=10), children, max_size=6),
    max_leaves=30,
)


def post(client, path, body, headers=JSON):
    content = body if isinstance(body, bytes) else json.dumps(body, allow_nan=True).encode()
    return client.post(path, content=content, headers=headers)


def assert_rejected(response, field_prefix=None):
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    body = response.json()
    assert body["errors"] and all(isinstance(e["field"], str) and e["field"] for e in body["errors"])
    if field_prefix is not None:
        assert any(e["field"].startswith(field_prefix) for e in body["errors"]), body


def valid_beat():
    return {"samples": [0.0] + [0.5] * 100 + [0.0] * 86}


@FUZZ
@given(body=json_values, path=st.sampled_from([BEATS, ECG]))
def test_arbitrary_json_never_gives_a_5xx(client, body, path):
    response = post(client, path, body)
    assert response.status_code < 500
    if response.status_code != 200:
        assert_rejected(response)


@FUZZ
@given(body=st.binary(max_size=300), path=st.sampled_from([BEATS, ECG]))
def test_arbitrary_bytes_never_give_a_5xx(client, body, path):
    assert_rejected(post(client, path, body))


@FUZZ
@given(
    content_type=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
    .map(str.strip)
    .filter(lambda t: t.split(";")[0].strip().lower() not in ("application/json", "application/x-npy"))
)
def test_other_content_types_are_415(client, content_type):
    response = post(client, BEATS, {"beats": [valid_beat()]}, headers={"content-type": content_type})
    assert response.status_code == 415
    assert_rejected(response, "content-type")


@st.composite
def broken_beat_batches(draw):
    """A valid batch with one defect; returns (body, the field the error must name)."""
    beats = [valid_beat() for _ in range(draw(st.integers(1, SMALL_LIMITS["max_batch_beats"])))]
    i = draw(st.integers(0, len(beats) - 1))
    j = draw(st.integers(0, 186))
    kind = draw(
        st.sampled_from(["length", "nan", "range", "type", "rr", "extra", "empty", "oversized", "length_field"])
    )
    if kind == "length":
        n = draw(st.integers(0, 400).filter(lambda n: n != 187))
        beats[i]["samples"] = [0.5] * n
        return {"beats": beats}, f"beats[{i}].samples"
    if kind == "nan":
        beats[i]["samples"][j] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        return {"beats": beats}, f"beats[{i}].samples[{j}]"
    if kind == "range":
        beats[i]["samples"][j] = draw(finite.filter(lambda v: v < -1e-5 or v > 1 + 1e-5))
        return {"beats": beats}, f"beats[{i}].samples[{j}]"
    if kind == "type":
        beats[i]["samples"][j] = draw(st.text(max_size=5) | st.none() | st.booleans() | st.lists(finite, max_size=2))
        return {"beats": beats}, f"beats[{i}].samples[{j}]"
    if kind == "rr":
        field = draw(st.sampled_from(["rr_prev", "rr_next", "rr_local"]))
        beats[i][field] = draw(any_float.filter(lambda v: not (0 < v <= 10)) | st.text(max_size=3))
        return {"beats": beats}, f"beats[{i}].{field}"
    if kind == "length_field":
        beats[i]["length"] = draw(
            st.integers().filter(lambda v: not 0 <= v <= 2000) | finite.filter(lambda v: v != int(v))
        )
        return {"beats": beats}, f"beats[{i}].length"
    if kind == "extra":
        beats[i][draw(st.text(min_size=1, max_size=8).filter(lambda k: k not in valid_beat()))] = 1
        return {"beats": beats}, f"beats[{i}]"
    if kind == "empty":
        return {"beats": []}, "beats"
    return {"beats": [valid_beat()] * (SMALL_LIMITS["max_batch_beats"] + draw(st.integers(1, 5)))}, "beats"


@FUZZ
@given(case=broken_beat_batches())
def test_each_beat_defect_is_a_422_naming_its_field(client, case):
    body, field = case
    response = post(client, BEATS, body)
    assert response.status_code == 422, response.text[:300]
    assert_rejected(response, field)


@FUZZ
@given(
    fs=any_float | st.integers(-10, 10_000) | st.text(max_size=4) | st.none(),
    n=st.integers(0, 12_000),
    poison=st.sampled_from([None, math.nan, math.inf, 1e9, "x"]),
)
def test_strips_are_classified_or_rejected_with_the_field(client, fs, n, poison):
    signal = [0.1 * math.sin(k / 7) for k in range(n)]
    if poison is not None and n:
        signal[n // 2] = poison
    response = post(client, ECG, {"fs": fs, "signal": signal})
    assert response.status_code < 500, response.text[:300]
    if response.status_code == 200:
        body = response.json()
        assert body["summary"]["beats"] == len(body["beats"]) >= 1
    else:
        assert_rejected(response)
        assert response.json()["errors"][0]["field"].split("[")[0] in {"fs", "signal", "body"}


def test_oversized_body_without_content_length_is_413(client):
    def chunks():
        for _ in range(30):
            yield b" " * 10_000

    response = client.post(BEATS, content=chunks(), headers=JSON)
    assert response.status_code == 413
    assert_rejected(response, "body")
