"""Signal quality on real record excerpts: clean ECG passes untouched, flat lines, noise and a stuck
amplifier are named, spikes are bridged so the beats under them are found again, and an inverted lead
is flipped back."""

from __future__ import annotations

import numpy as np
import pytest
import wfdb

from ecgbeats.processing.quality import QualityConfig, UnusableSignal, assess
from ecgbeats.serving.scoring import detect_r_peaks
from tests.conftest import FIXTURE_MIRROR

RECORDS = ["124", "201", "208", "213", "217", "232"]
FS = 360.0


def lead(record: str, seconds: float = 60.0) -> np.ndarray:
    rec = wfdb.rdrecord(str(FIXTURE_MIRROR / record), channels=[0], sampto=int(seconds * FS))
    return rec.p_signal[:, 0].astype(np.float64)


def annotated_peaks(record: str, seconds: float = 60.0) -> np.ndarray:
    ann = wfdb.rdann(str(FIXTURE_MIRROR / record), "atr", sampto=int(seconds * FS))
    beats = np.isin(ann.symbol, list("NLRejAaJSVFE/fQ"))
    return np.asarray(ann.sample)[beats]


@pytest.mark.parametrize("record", RECORDS)
def test_clean_records_pass_untouched_and_upright(record):
    x = lead(record)
    quality = assess(x, FS)
    assert quality.unusable == [] and quality.spikes == 0
    np.testing.assert_array_equal(quality.signal, x)
    quality.orient(annotated_peaks(record), QualityConfig())
    assert not quality.inverted and not quality.suspect and quality.qrs_ratio is not None


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda rng, n: rng.normal(0, 0.01, n), "flat"),  # 10 µV of noise on no signal
        (lambda rng, n: np.zeros(n), "flat"),
        (lambda rng, n: rng.normal(0, 1.0, n), "noise"),  # 1 mV of Gaussian noise
        (lambda rng, n: rng.normal(0, 0.1, n), "noise"),
        (lambda rng, n: np.clip(rng.normal(0, 1.0, n), -0.5, 0.5), "saturated"),
    ],
)
def test_strips_with_no_ecg_are_refused_with_the_reason(make, reason):
    rng = np.random.default_rng(0)
    with pytest.raises(UnusableSignal, match=rf"6 {reason}"):
        assess(make(rng, int(60 * FS)), FS)


def test_a_noisy_stretch_is_marked_and_only_its_beats_are_left_unscored():
    x = lead("213")
    x[int(20 * FS) : int(30 * FS)] = np.random.default_rng(1).normal(0, 1.0, int(10 * FS))
    quality = assess(x, FS)
    assert [(s.start / FS, s.end / FS, s.reason) for s in quality.unusable] == [(20.0, 30.0, "noise")]
    peaks = annotated_peaks("213")
    reasons = quality.beat_reasons(peaks)
    inside = (peaks >= 20 * FS) & (peaks < 30 * FS)
    assert (reasons[inside] == "noise").all() and (reasons[~inside] == "").all()


def test_spikes_are_bridged_so_the_beats_under_them_are_detected_again():
    x = lead("124")
    spiked = x.copy()
    spiked[np.arange(int(0.5 * FS), len(x), int(FS))] += 50.0  # a 50 mV pop every second
    clean_peaks = detect_r_peaks(x, FS)

    def beats_found(peaks: np.ndarray) -> int:
        return int((np.abs(peaks[:, None] - clean_peaks[None, :]).min(axis=0) < 0.15 * FS).sum())

    assert beats_found(detect_r_peaks(spiked, FS)) < 0.5 * len(clean_peaks)  # the detector follows the spikes
    quality = assess(spiked, FS)
    assert quality.spikes == 60
    assert np.abs(quality.signal - x).max() < 2.0  # the pops are gone, the ECG is what it was
    found = detect_r_peaks(quality.signal, FS)
    assert beats_found(found) >= 0.95 * len(clean_peaks)
    assert len(found) <= 1.05 * len(clean_peaks)
    reasons = quality.beat_reasons(found)
    assert 0 < (reasons == "spike").sum() < len(found)


@pytest.mark.parametrize("record", RECORDS)
def test_an_inverted_lead_is_reported_and_flipped_back_when_clear(record):
    x = lead(record)
    quality = assess(-x, FS)
    peaks = detect_r_peaks(-x, FS)
    quality.orient(peaks, QualityConfig())
    assert quality.suspect or quality.inverted  # never called upright
    assert "inverted" in str(quality.summary(0)["polarity"])
    clear = assess(-x, FS)
    clear.orient(peaks, QualityConfig(inverted_ratio=1.6))
    assert clear.inverted
    np.testing.assert_array_equal(clear.signal, x)
