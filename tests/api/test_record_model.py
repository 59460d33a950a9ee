"""A record model in the service and the batch CLI: the same measurement as at training time, two
leads on the strip endpoint, and clear refusals where a beat row cannot be scored."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ecgbeats.data.aami import CLASS_NAMES
from ecgbeats.data.dataset import read_record_signals
from ecgbeats.features.record import RecordBeatConfig, annotated_beats, annotated_table, feature_columns
from ecgbeats.modelling.bundle import load_bundle, save_bundle
from ecgbeats.modelling.model import fit_booster
from ecgbeats.processing.quality import QualityConfig
from ecgbeats.serving import batch, scoring
from ecgbeats.serving.scoring import Scorer
from tests.api.conftest import running_server
from tests.conftest import FIXTURE_MIRROR
from tests.model.conftest import FIXTURE_TRAIN_PARAMS

TRAIN_RECORDS = ["124", "201", "208"]
SCORED = "213"
CONFIG = RecordBeatConfig(template_beats=10)


def fit_record_bundle(path, config: RecordBeatConfig, **meta):
    """A record bundle fitted on the fixture's training records, measured with ``config``."""
    table = annotated_table(FIXTURE_MIRROR, TRAIN_RECORDS, config, progress=False)
    columns = feature_columns(config)
    booster = fit_booster(table[columns], table["label"].to_numpy(), FIXTURE_TRAIN_PARAMS, seed=0, num_boost_round=20)
    save_bundle(
        path,
        booster,
        {
            "protocol": "interpatient",
            "class_names": list(CLASS_NAMES),
            "preprocessing": {"representation": "record", **config.to_dict()},
            "patient_context": {"history_seconds": config.history_seconds},
            "features": {"groups": list(config.groups), "columns": columns, "tsfresh": None},
            "provenance": {"ecgbeats_version": "0.1.0"},
            **meta,
        },
    )
    return path


@pytest.fixture(scope="module")
def record_bundle(tmp_path_factory):
    return fit_record_bundle(tmp_path_factory.mktemp("record") / "bundle", CONFIG)


@pytest.fixture
def annotated_detector(monkeypatch):
    """The detector replaced by the record's own annotated beats: the strip path then sees the training peaks."""
    from ecgbeats.data.aami import BEAT_SYMBOLS

    rec = read_record_signals(FIXTURE_MIRROR, SCORED)
    peaks = rec.ann_samples[np.isin(np.asarray(rec.ann_symbols), list(BEAT_SYMBOLS))]
    monkeypatch.setattr(scoring, "detect_r_peaks", lambda signal, fs: peaks.astype(np.int64))
    return rec


def test_the_strip_path_measures_beats_exactly_as_training_does(record_bundle, annotated_detector):
    rec = annotated_detector
    scorer = Scorer(load_bundle(record_bundle))
    _, served, _ = scorer.strip_beats(rec.signal, rec.fs)
    trained = annotated_beats(FIXTURE_MIRROR, SCORED, CONFIG)
    served = served.set_index("r_peak").loc[trained["r_refined"].to_numpy()]
    columns = feature_columns(CONFIG)
    np.testing.assert_array_equal(served[columns].to_numpy(), trained[columns].to_numpy())


def test_batch_on_a_record_scores_the_training_beats(record_bundle, tmp_path):
    scorer = Scorer(load_bundle(record_bundle))
    out = tmp_path / "scored.parquet"
    report = batch.run(FIXTURE_MIRROR / SCORED, out, scorer, peaks="annotations", progress=False)
    scored = pd.read_parquet(out)
    trained = annotated_beats(FIXTURE_MIRROR, SCORED, CONFIG)
    assert report.scored == len(trained) == len(scored)
    expected = scorer.bundle.booster.predict(trained[feature_columns(CONFIG)].to_numpy(dtype=np.float64))
    np.testing.assert_allclose(scored[[f"p_{c}" for c in CLASS_NAMES]].to_numpy(), expected, rtol=0, atol=1e-12)
    assert scored["label"].tolist() == trained["label"].tolist()


def test_batch_detects_on_both_leads_by_default(record_bundle, tmp_path, annotated_detector):
    scorer = Scorer(load_bundle(record_bundle))
    two, one = tmp_path / "two.parquet", tmp_path / "one.parquet"
    batch.run(FIXTURE_MIRROR / SCORED, two, scorer, progress=False)
    batch.run(FIXTURE_MIRROR / SCORED, one, scorer, second_channel=-1, progress=False)
    both, single = pd.read_parquet(two), pd.read_parquet(one)
    assert len(both) == len(single) > 100
    assert not np.allclose(both["p_N"], single["p_N"])  # the second lead's measures count


def test_batch_refuses_a_beat_table_for_a_record_model(record_bundle, tmp_path, fixture_beats):
    table = tmp_path / "beats.parquet"
    fixture_beats.head(5).to_parquet(table)
    with pytest.raises(batch.BatchInputError, match="raw record"):
        batch.run(table, tmp_path / "out.csv", Scorer(load_bundle(record_bundle)), progress=False)


def test_served_record_model_takes_two_leads_and_refuses_beat_rows(record_bundle, tmp_path):
    import httpx

    rec = read_record_signals(FIXTURE_MIRROR, SCORED)
    strip = rec.signal[: int(60 * rec.fs)]
    scorer = Scorer(load_bundle(record_bundle))
    expected = scorer.score_strip(strip, rec.fs)
    with running_server(tmp_path / "server.log", model_dir=record_bundle) as base:
        body = {"fs": rec.fs, "signal": strip[:, 0].tolist(), "second_lead": strip[:, 1].tolist()}
        response = httpx.post(f"{base}/v1/ecg:classify", json=body, timeout=30)
        assert response.status_code == 200, response.text
        beats = response.json()["beats"]
        assert [b["r_peak"] for b in beats] == expected.beats["r_peak"].tolist()
        got = np.array([[b["probabilities"][c] for c in CLASS_NAMES] for b in beats])
        np.testing.assert_allclose(got, expected.predictions.probabilities, rtol=0, atol=1e-9)

        short = {**body, "second_lead": body["second_lead"][:-1]}
        response = httpx.post(f"{base}/v1/ecg:classify", json=short, timeout=30)
        assert response.status_code == 422 and "second_lead" in response.text

        row = {"beats": [{"samples": [1.0] + [0.5] * 185 + [0.0]}]}
        response = httpx.post(f"{base}/v1/beats:classify", json=row, timeout=30)
        assert response.status_code == 422
        assert "raw ECG" in response.text and "/v1/ecg:classify" in response.text

        info = httpx.get(f"{base}/v1/model", timeout=10).json()
        assert info["preprocessing"]["representation"] == "record"
        assert info["patient_context"]["history_seconds"] == CONFIG.history_seconds


def test_an_inverted_lead_once_flipped_gets_the_classes_of_the_upright_one(record_bundle):
    rec = read_record_signals(FIXTURE_MIRROR, SCORED)
    strip = rec.signal[: int(120 * rec.fs)]
    scorer = Scorer(load_bundle(record_bundle))
    scorer.quality_config = QualityConfig(inverted_ratio=1.6)  # record 213 inverted: 2.1, below the default
    upright = scorer.score_strip(strip, rec.fs)
    flipped = strip.copy()
    flipped[:, 0] = -flipped[:, 0]
    inverted = scorer.score_strip(flipped, rec.fs)
    assert inverted.quality.inverted and not upright.quality.inverted
    np.testing.assert_array_equal(inverted.beats["r_peak"], upright.beats["r_peak"])
    np.testing.assert_allclose(inverted.predictions.probabilities, upright.predictions.probabilities, atol=1e-12)


REFERENCE_CONFIG = RecordBeatConfig(template_beats=10, leads=1, groups=("rhythm", "template", "reference"))
RULES = {"premature": 0.7, "p_corr": None, "qrs_corr": 0.9, "fibrillation": True}


@pytest.fixture(scope="module")
def reference_bundle(tmp_path_factory):
    """A record model on the sinus reference measures, with the rhythm rules in its bundle."""
    path = tmp_path_factory.mktemp("record-reference") / "bundle"
    return fit_record_bundle(path, REFERENCE_CONFIG, rhythm_rules=RULES)


def test_the_rhythm_rules_and_context_reach_every_answer(reference_bundle, tmp_path):
    import httpx

    from ecgbeats.modelling.rhythm_rules import RhythmRules

    bundle = load_bundle(reference_bundle)
    assert bundle.rhythm_rules == RhythmRules(**RULES)
    assert bundle.record_config.history_seconds == REFERENCE_CONFIG.reference.window_s
    scorer = Scorer(bundle)
    rec = read_record_signals(FIXTURE_MIRROR, SCORED)
    strip = rec.signal[:, :1]
    result = scorer.score_strip(strip, rec.fs)
    # the scorer's classes are the model's with the rules applied on the beats' reference measures
    raw = bundle.booster.predict(result.beats[bundle.feature_columns].to_numpy(dtype=np.float64))
    expected = bundle.rhythm_rules.apply(raw, result.beats, bundle.record_config.reference)
    np.testing.assert_allclose(result.predictions.probabilities, expected, rtol=0, atol=1e-12)
    assert set(result.beats["rhythm"]) <= {"", "irregular_no_p"}
    with running_server(tmp_path / "server.log", model_dir=reference_bundle) as base:
        body = {"fs": rec.fs, "signal": strip[:, 0].tolist()}
        response = httpx.post(f"{base}/v1/ecg:classify", json=body, timeout=60)
        assert response.status_code == 200, response.text
        beats = response.json()["beats"]
        assert [b["rhythm"] for b in beats] == result.beats["rhythm"].tolist()
        got = np.array([[b["probabilities"][c] for c in CLASS_NAMES] for b in beats])
        np.testing.assert_allclose(got, result.predictions.probabilities, rtol=0, atol=1e-9)
        info = httpx.get(f"{base}/v1/model", timeout=10).json()
        assert info["rhythm_rules"] == RULES
        assert info["drift"] is None  # this bundle has no drift reference; the pipeline's bundles do
    out = tmp_path / "scored.parquet"
    batch.run(FIXTURE_MIRROR / SCORED, out, scorer, second_channel=-1, progress=False)
    scored = pd.read_parquet(out)
    assert "rhythm" in scored and len(scored) == len(result.beats)


def test_a_long_rr_that_may_hide_a_missed_beat_is_flagged_in_every_answer(record_bundle, tmp_path):
    import httpx
    import wfdb

    fs = 360.0
    t = np.arange(int(60 * fs)) / fs
    times = np.arange(1.0, 59.0, 0.8)
    small = 40  # a beat a fifth of the others' height: the detector misses it, and the RR over it doubles
    lead = sum((0.2 if k == small else 1.0) * np.exp(-(((t - at) / 0.012) ** 2)) for k, at in enumerate(times))
    lead = np.round(lead + np.random.default_rng(0).normal(0, 0.005, len(t)), 3)
    result = Scorer(load_bundle(record_bundle)).score_strip(lead, fs)
    flagged = result.beats[result.beats["rr_check"] != ""]
    assert flagged["rr_check"].tolist() == ["possible_missed_beat"]
    assert abs(flagged["time_s"].iat[0] - times[small + 1]) < 0.05
    assert not np.any(np.abs(result.beats["time_s"].to_numpy() - times[small]) < 0.1)
    with running_server(tmp_path / "server.log", model_dir=record_bundle) as base:
        response = httpx.post(f"{base}/v1/ecg:classify", json={"fs": fs, "signal": lead.tolist()}, timeout=60)
        assert response.status_code == 200, response.text
        assert [b["rr_check"] for b in response.json()["beats"]] == result.beats["rr_check"].tolist()
        # the strip's findings come with the answer, as the batch CLI's --findings gives them
        from ecgbeats.modelling.findings import recording_findings

        beats = result.beats.assign(class_name=result.predictions.names)
        assert response.json()["findings"] == json.loads(json.dumps(recording_findings(beats, len(lead) / fs)))
    wfdb.wrsamp("strip", fs=fs, units=["mV"], sig_name=["MLII"], p_signal=lead[:, None], fmt=["16"],
                adc_gain=[1000.0], baseline=[0], write_dir=str(tmp_path))  # fmt: skip
    out = tmp_path / "scored.parquet"
    batch.run(tmp_path / "strip", out, Scorer(load_bundle(record_bundle)), progress=False)
    assert pd.read_parquet(out)["rr_check"].tolist() == result.beats["rr_check"].tolist()
