"""The shared scoring path: the same beats, lengths and RR as ingest; versions; strip agreement."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import wfdb
from scipy.signal import resample_poly

from ecgbeats.data.dataset import SAMPLE_COLUMNS, InputDataError, read_kaggle_csv, record_beats
from ecgbeats.serving import scoring
from ecgbeats.serving.scoring import Scorer, ScoringError, beat_frame, row_problems
from tests.conftest import FIXTURE_MIRROR


def strip(record: str) -> tuple[np.ndarray, float]:
    rec = wfdb.rdrecord(str(FIXTURE_MIRROR / record), channels=[0])
    return rec.p_signal[:, 0], float(rec.fs)


def test_the_service_and_the_csv_reader_find_the_padding_the_same_way(tmp_path, fixture_beats):
    rows = fixture_beats.head(50)
    values = rows[SAMPLE_COLUMNS].to_numpy().copy()
    values[:, 150:] = 0  # some padding to find
    values[3, 20:] = 0  # a short beat
    expected = [np.flatnonzero(v).max() + 1 for v in values]
    pd.DataFrame(np.column_stack([values, rows["label"]])).to_csv(tmp_path / "k.csv", header=False, index=False)
    np.testing.assert_array_equal(read_kaggle_csv(tmp_path / "k.csv")["length"], expected)
    np.testing.assert_array_equal(beat_frame(values)["length"], expected)  # the API's beats without a length


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda v: v.__setitem__((4, 10), 7.0), "row 5: s010: 7 is outside [0, 1]"),
        (lambda v: v.__setitem__((2, 0), -3.0), "row 3: s000: -3 is outside [0, 1]"),
        (lambda v: v.__setitem__(6, 0.0), "row 7: samples: the values span only 0"),
    ],
)
def test_ingest_reads_kaggle_csvs_by_the_rules_of_the_api_and_the_batch_cli(tmp_path, fixture_beats, change, message):
    rows = fixture_beats.head(10)
    values = rows[SAMPLE_COLUMNS].to_numpy().copy()
    change(values)
    path = tmp_path / "k.csv"
    pd.DataFrame(np.column_stack([values, rows["label"]])).to_csv(path, header=False, index=False)
    with pytest.raises(InputDataError, match=re.escape(message)):
        read_kaggle_csv(path)
    problems = row_problems(pd.DataFrame(values, columns=SAMPLE_COLUMNS))  # the batch CLI's check
    assert (problems != "").sum() == 1 and message.split(": ", 1)[1] in problems.iat[int(message[4]) - 1]


def test_a_blank_line_in_a_kaggle_csv_is_reported_at_its_line(tmp_path, fixture_beats):
    rows = fixture_beats.head(5)
    lines = pd.DataFrame(np.column_stack([rows[SAMPLE_COLUMNS], rows["label"]])).to_csv(header=False, index=False)
    text = lines.splitlines()
    path = tmp_path / "k.csv"
    path.write_text("\n".join(text[:2] + ["", ""] + text[2:]) + "\n")
    with pytest.raises(InputDataError, match=r"row 3 is empty"):
        read_kaggle_csv(path)


@pytest.mark.parametrize("beat_end", ["next_beat", "next_annotation"])
def test_strip_path_cuts_exactly_as_ingest_at_the_same_peaks(scorer, monkeypatch, beat_end):
    """Given the annotated R peaks, the strip path yields ingest's beats, lengths and RR intervals; with
    the published rule (``next_annotation``) except where a non-beat annotation (rhythm change, noise
    mark) ends ingest's beat early: a strip has no such marks."""
    expected = record_beats(FIXTURE_MIRROR, "213", beat_end=beat_end)
    signal, fs = strip("213")
    peaks = np.append(expected["r_peak"].to_numpy(), 64799)  # the last beat needs a following peak
    ann = wfdb.rdann(str(FIXTURE_MIRROR / "213"), "atr")
    peaks[-1] = ann.sample[np.searchsorted(ann.sample, expected["r_peak"].iat[-1]) + 1]
    monkeypatch.setattr(scoring, "detect_r_peaks", lambda signal, fs: peaks)
    got_peaks, beats, _ = scorer.strip_beats(signal, fs)
    assert (beats.pop("unscored") == "").all()
    np.testing.assert_array_equal(beats["r_peak"], expected["r_peak"])
    same = np.ones(len(expected), bool)
    if beat_end == "next_annotation":  # a beat's stop depends on the two annotations after its peak
        is_peak = np.isin(ann.sample, peaks)
        nxt = np.searchsorted(ann.sample, expected["r_peak"].to_numpy(), side="right")
        same = is_peak[nxt] & is_peak[np.minimum(nxt + 1, len(ann.sample) - 1)]
        assert 0 < (~same).sum() < len(same) // 4
        assert (expected["length"][~same] < beats["length"][~same]).all()
    np.testing.assert_array_equal(beats["length"][same], expected["length"][same])
    np.testing.assert_allclose(beats[SAMPLE_COLUMNS][same], expected[SAMPLE_COLUMNS][same], atol=1e-6)
    for col in ("rr_prev", "rr_next", "rr_local"):  # record 213's beats are all AAMI beats
        np.testing.assert_allclose(beats[col], expected[col], rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(
        scorer.score_beats(beats[same]).probabilities, scorer.bundle.predict_proba(expected[same]), atol=1e-5
    )


def test_detected_strip_classes_agree_with_the_annotated_beats(scorer):
    """The detector on fixture records 213 and 232: most annotated beats are found and classed alike."""
    found = agreed = total = 0
    for record in ("213", "232"):
        annotated = record_beats(FIXTURE_MIRROR, record)
        reference = scorer.score_beats(annotated).codes
        signal, fs = strip(record)
        result = scorer.score_strip(signal, fs)
        detected = result.beats["r_peak"].to_numpy()
        nearest = np.abs(annotated["r_peak"].to_numpy()[:, None] - detected[None, :]).argmin(axis=1)
        matched = np.abs(annotated["r_peak"].to_numpy() - detected[nearest]) <= 0.15 * fs
        total += len(annotated)
        found += matched.sum()
        agreed += (result.predictions.codes[nearest[matched]] == reference[matched]).sum()
    assert found / total > 0.97
    assert agreed / found > 0.9


def test_a_strip_at_another_rate_gives_the_same_rhythm(scorer):
    signal, fs = strip("232")
    at_360 = scorer.score_strip(signal[: 360 * 60], fs)
    at_250 = scorer.score_strip(resample_poly(signal[: 360 * 60], 25, 36), 250.0)
    assert abs(at_250.summary()["beats"] - at_360.summary()["beats"]) <= 2
    assert at_250.summary()["mean_heart_rate_bpm"] == pytest.approx(at_360.summary()["mean_heart_rate_bpm"], rel=0.02)


def test_a_flat_strip_is_unscorable_naming_the_signal(scorer):
    with pytest.raises(ScoringError, match="no usable ECG.* 1 flat") as err:
        scorer.score_strip(np.zeros(3600), 360.0)
    assert err.value.field == "signal"


def test_model_version_from_meta_or_settings(scorer, bundle_dir):
    from ecgbeats.modelling.bundle import load_bundle

    assert scorer.version == f"0.1.0+fixture.{scorer.digest[:12]}"
    assert Scorer(load_bundle(bundle_dir), version="2.3.1").version == "2.3.1"


def test_row_problems_name_the_column():
    values = np.full((5, 187), 0.5, dtype=np.float32)
    values[:4, 0], values[:4, 100] = 1.0, 0.0  # min-max scaled beats
    frame = beat_frame(values)
    frame.loc[1, "s005"] = np.nan
    frame.loc[2, "s186"] = 1.5
    frame.loc[3, "rr_prev"] = -1.0
    problems = row_problems(frame).tolist()
    assert problems[0] == ""
    assert problems[1].startswith("s005: not a finite")
    assert problems[2].startswith("s186: 1.5 is outside")
    assert problems[3].startswith("rr_prev: -1")
    assert problems[4].startswith("samples: the values span only 0;")
