"""The compiled GQRS gives wfdb's GQRS output sample for sample, and its R peaks sit on the QRS."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import resample_poly
from wfdb.processing import gqrs_detect

from ecgbeats.data.aami import BEAT_SYMBOLS
from ecgbeats.data.dataset import read_record_signals
from ecgbeats.modelling.ec57 import match_beats
from ecgbeats.processing.gqrs import DetectionError, gqrs, gqrs_peaks
from tests.conftest import FIXTURE_MIRROR

RATES = {250: (25, 36), 360: (1, 1), 1000: (25, 9)}  # resample_poly's up, down from 360 Hz


def lead(record: str, rate: int) -> np.ndarray:
    rec = read_record_signals(FIXTURE_MIRROR, record)
    up, down = RATES[rate]
    return resample_poly(rec.signal[:, 0], up, down) if up != down else rec.signal[:, 0]


@pytest.mark.parametrize("rate", sorted(RATES))
@pytest.mark.parametrize("record", ["124", "208", "213"])
def test_same_beats_as_wfdb_gqrs(record, rate):
    signal = lead(record, rate)
    expected = gqrs_detect(sig=signal, fs=rate)
    assert len(expected) > 150
    np.testing.assert_array_equal(gqrs(signal, rate), expected)


def test_same_beats_as_wfdb_gqrs_on_noise_and_on_the_edges():
    """Noise (thresholds decaying with no QRS), inverted ECG, and signals of a few samples to a few seconds
    (wfdb's learning pass and its end-of-signal clean-up decide these)."""
    signal = lead("213", 360)
    rng = np.random.default_rng(7)
    cases = [rng.normal(0, 0.05, 360 * 30), -signal[: 360 * 60], signal[: 360 * 60] * 20]
    cases += [signal[:n] for n in (1, 2, 30, 300, 356, 357, 358, 359, 360, 361, 500, 1000, 5000)]
    for x in cases:
        np.testing.assert_array_equal(gqrs(x, 360), gqrs_detect(sig=x, fs=360), err_msg=f"{len(x)} samples")


def test_r_peaks_sit_on_the_annotated_r_peaks():
    rec = read_record_signals(FIXTURE_MIRROR, "213")
    reference = rec.ann_samples[np.isin(np.asarray(rec.ann_symbols), list(BEAT_SYMBOLS))]
    peaks = gqrs_peaks(rec.signal[:, 0], rec.fs)
    match = match_beats(reference, peaks, rec.fs)
    assert len(match.reference) / len(reference) > 0.99
    offsets = peaks[match.detected] - reference[match.reference]
    assert np.median(np.abs(offsets)) <= 1  # wfdb's own annotation times sit 2 * dt (12 samples) earlier
    assert np.all(np.diff(peaks) > 0) and peaks[0] >= 0 and peaks[-1] < len(rec.signal)


def test_refusals_name_the_problem():
    with pytest.raises(DetectionError, match="non-finite"):
        gqrs_peaks(np.array([0.0, np.nan, 1.0] * 1000), 360.0)
    with pytest.raises(DetectionError, match="one lead"):
        gqrs_peaks(np.zeros((100, 2)), 360.0)
    with pytest.raises(DetectionError, match="cannot run at 20 Hz"):
        gqrs_peaks(np.zeros(1000), 20.0)
    assert len(gqrs_peaks(np.zeros(0), 360.0)) == 0
