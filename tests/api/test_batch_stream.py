"""Long recordings in the batch CLI: streamed in segments exactly as the whole signal is scored, and
EDF input giving the beats of the same record in WFDB."""

from __future__ import annotations

import edfio
import numpy as np
import pandas as pd
import pytest
import wfdb

from ecgbeats.data.aami import CLASS_NAMES
from ecgbeats.data.dataset import read_record_signals
from ecgbeats.modelling.bundle import load_bundle
from ecgbeats.serving import batch, streaming
from ecgbeats.serving.scoring import Scorer
from ecgbeats.serving.streaming import segment_beats
from tests.api.test_record_model import record_bundle  # noqa: F401 (fixture: a record model on fixture records)
from tests.conftest import FIXTURE_MIRROR

PROBA = [f"p_{c}" for c in CLASS_NAMES]
SEGMENT_S = 30.0  # six segments in a 3-minute fixture record
RECORD = "208"  # frequent PVCs and couplets: a hard record for the detector


@pytest.fixture(scope="module")
def scorer(record_bundle):  # noqa: F811
    return Scorer(load_bundle(record_bundle))


@pytest.fixture(scope="module")
def record():
    return read_record_signals(FIXTURE_MIRROR, RECORD)


def reads(signal: np.ndarray, size: int):
    return (signal[start : start + size] for start in range(0, len(signal), size))


def test_streamed_segments_are_the_whole_signal_bit_for_bit(scorer, record):
    signal, fs = record.signal[:, :2], record.fs
    peaks, whole, quality = streaming.strip_beats(scorer, signal, fs, SEGMENT_S)
    expected = scorer.score_beats(whole.drop(columns="unscored")).probabilities
    assert len(whole) > 200 and np.all(np.diff(whole["r_peak"]) > 0)  # no beat twice at a segment edge
    assert quality.windows == 18  # the 10-s quality windows of 180 s, none counted twice
    # reads of one sample, of an odd length across segment edges, of a segment, and of it all
    for size in (1, int(7.3 * fs) + 13, int(SEGMENT_S * fs), len(signal)):
        parts = list(segment_beats(scorer, reads(signal, size if size > 1 else 997), fs, SEGMENT_S))
        assert [(p.start, p.stop) for p in parts] == [(k * 10800, min((k + 1) * 10800, len(signal))) for k in range(6)]
        streamed = pd.concat([p.beats for p in parts], ignore_index=True)
        pd.testing.assert_frame_equal(streamed, whole, check_exact=True)
        got = scorer.score_beats(streamed.drop(columns="unscored")).probabilities
        np.testing.assert_array_equal(got, expected)


def test_unusable_stretches_stream_as_they_score_whole(scorer, record):
    """A lead off for 80 s: two segments' detection contexts are flat throughout, a third's partly."""
    signal, fs = record.signal[:, :2].copy(), record.fs
    signal[int(50 * fs) : int(130 * fs)] = 0.0
    _, whole, quality = streaming.strip_beats(scorer, signal, fs, SEGMENT_S)
    flat = [(seg.start / fs, seg.end / fs) for seg in quality.unusable if seg.reason == "flat"]
    assert flat[0] == (50.0, 60.0) and flat[-1] == (120.0, 130.0) and len(flat) == 8  # window by window
    scored = whole[whole["unscored"] == ""]
    assert len(scored) > 100 and not ((scored["time_s"] > 50) & (scored["time_s"] < 130)).any()
    streamed = pd.concat([p.beats for p in segment_beats(scorer, reads(signal, 4001), fs, SEGMENT_S)])
    pd.testing.assert_frame_equal(streamed.reset_index(drop=True), whole, check_exact=True)


def test_segments_find_the_annotated_beats(scorer, record):
    """The overlap is right: no beat lost or doubled at the edges beyond what one-piece detection misses."""
    from wfdb.processing import compare_annotations

    from ecgbeats.data.aami import BEAT_SYMBOLS

    reference = record.ann_samples[np.isin(record.ann_symbols, list(BEAT_SYMBOLS))]
    _, segmented, _ = streaming.strip_beats(scorer, record.signal[:, :2], record.fs, 60.0)
    _, one_piece, _ = scorer.strip_beats(record.signal[:, :2], record.fs)
    tolerance = int(0.15 * record.fs)
    seg = compare_annotations(reference, segmented["r_peak"].to_numpy(), tolerance)
    one = compare_annotations(reference, one_piece["r_peak"].to_numpy(), tolerance)
    assert seg.fp <= one.fp + 1 and seg.tp >= 0.95 * one.tp


def test_batch_streamed_equals_whole_and_shows_seconds(scorer, record_bundle, tmp_path, capsys):  # noqa: F811
    streamed, whole = tmp_path / "streamed.parquet", tmp_path / "whole.parquet"
    common = ["--model", str(record_bundle), "--segment-seconds", str(SEGMENT_S), "--chunk-size", "7"]
    assert batch.main([str(FIXTURE_MIRROR / RECORD), str(streamed), *common]) == 0
    assert "180/180 s" in capsys.readouterr().err  # the progress bar runs over the recording's duration
    assert batch.main([str(FIXTURE_MIRROR / RECORD), str(whole), *common, "--whole", "--no-progress"]) == 0
    got, expected = pd.read_parquet(streamed), pd.read_parquet(whole)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert got["row"].tolist() == list(range(1, len(got) + 1)) == (got["beat_index"] + 1).tolist()


def write_edf(path, signal: np.ndarray, fs: float, labels, units, digital: np.ndarray, gain: float):
    """An EDF whose digital values are the WFDB record's ADC values (so both hold the same samples)."""
    lo, hi = int(digital.min()) - 1, int(digital.max()) + 1
    signals = [
        edfio.EdfSignal.from_digital(
            digital[:, j].astype(np.int16), fs, label=labels[j], physical_dimension=units[j],
            digital_range=(lo, hi), physical_range=(lo / gain, hi / gain),
        )
        for j in range(signal.shape[1])
    ]  # fmt: skip
    edfio.Edf(signals, data_record_duration=1.0).write(path)


@pytest.fixture(scope="module")
def excerpt(tmp_path_factory):
    """The first 120 s of a fixture record, as WFDB and as EDF (MLII and V1 in mV)."""
    directory = tmp_path_factory.mktemp("excerpt")
    rec = wfdb.rdrecord(str(FIXTURE_MIRROR / RECORD), sampto=120 * 360, physical=False)
    digital = rec.d_signal - np.asarray(rec.baseline)[None, :]
    signal = digital / np.asarray(rec.adc_gain)[None, :]
    wfdb.wrsamp("excerpt", fs=rec.fs, units=rec.units, sig_name=rec.sig_name, p_signal=signal, fmt=["16", "16"],
                adc_gain=rec.adc_gain, baseline=[0, 0], write_dir=str(directory))  # fmt: skip
    write_edf(directory / "excerpt.edf", signal, rec.fs, rec.sig_name, rec.units, digital, rec.adc_gain[0])
    return directory


def test_edf_gives_the_beats_of_the_wfdb_record(record_bundle, excerpt, tmp_path):  # noqa: F811
    from_wfdb, from_edf = tmp_path / "wfdb.parquet", tmp_path / "edf.parquet"
    common = ["--model", str(record_bundle), "--no-progress"]
    assert batch.main([str(excerpt / "excerpt"), str(from_wfdb), *common]) == 0
    assert batch.main([str(excerpt / "excerpt.edf"), str(from_edf), *common, "--channel", "mlii"]) == 0
    got, expected = pd.read_parquet(from_edf), pd.read_parquet(from_wfdb)
    assert len(got) > 100
    assert got["r_peak"].tolist() == expected["r_peak"].tolist()
    assert got["class_name"].tolist() == expected["class_name"].tolist()
    np.testing.assert_allclose(got[PROBA].to_numpy(), expected[PROBA].to_numpy(), rtol=0, atol=1e-6)
    assert (got["record"] == "excerpt.edf").all()


def test_edf_refuses_a_missing_channel_and_non_voltage_units(record_bundle, excerpt, tmp_path, capsys):  # noqa: F811
    common = ["--model", str(record_bundle), "--no-progress"]
    assert batch.main([str(excerpt / "excerpt.edf"), str(tmp_path / "a.csv"), *common, "--channel", "ECG3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("has no channel 'ECG3' (channels: MLII, V1)") and "\n" not in err
    assert batch.main([str(excerpt / "excerpt.edf"), str(tmp_path / "b.csv"), *common, "--channel", "5"]) == 2
    assert "there is no channel 5" in capsys.readouterr().err

    rec = wfdb.rdrecord(str(excerpt / "excerpt"), physical=False)
    odd = tmp_path / "temperature.edf"
    write_edf(odd, rec.d_signal / 200.0, rec.fs, ["Temp", "ECG"], ["degC", "mV"], rec.d_signal, 200.0)
    assert batch.main([str(odd), str(tmp_path / "c.csv"), *common, "--channel", "Temp"]) == 2
    err = capsys.readouterr().err.strip()
    assert "channel 'Temp' is in 'degC', not a voltage (mV, uV or V)" in err and "\n" not in err
    assert not list(tmp_path.glob("*.csv"))  # nothing written on a refusal
