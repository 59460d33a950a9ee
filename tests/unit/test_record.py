"""The record representation: measured values on a synthetic ECG, causality of the patient context,
record-disjoint folds, and EC57 beat matching."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecgbeats.features.record import (
    RecordBeatConfig,
    _running_median,
    condition,
    feature_columns,
    model_config,
    record_features,
    rhythm_features,
)
from ecgbeats.modelling.crossval import patient_folds
from ecgbeats.modelling.ec57 import match_beats

FS = 360
P_AMP, P_OFFSET_S = 0.15, -0.16  # mV, s from R
QRS_AMP, QRS_SIGMA_S = 1.2, 0.012  # a Gaussian R wave: |x| > a quarter of its peak over 2 sigma sqrt(2 ln 4)
T_AMP, T_OFFSET_S = 0.3, 0.25


def gaussian(t: np.ndarray, centre: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((t - centre) / sigma) ** 2)


def synthetic_ecg(r_times: np.ndarray, seconds: float, *, wide: set[int] = frozenset(), seed: int = 0) -> np.ndarray:
    """A clean one-lead ECG in mV: P, a Gaussian QRS (wider for the beats in ``wide``) and T per beat,
    plus a slow baseline wander the band-pass must remove."""
    t = np.arange(int(seconds * FS)) / FS
    signal = 0.4 * np.sin(2 * np.pi * 0.15 * t)  # baseline wander, 0.15 Hz
    for i, r in enumerate(r_times):
        sigma = QRS_SIGMA_S * (3 if i in wide else 1)
        signal += P_AMP * gaussian(t, r + P_OFFSET_S, 0.02)
        signal += QRS_AMP * gaussian(t, r, sigma)
        signal += T_AMP * gaussian(t, r + T_OFFSET_S, 0.04)
    return signal + np.random.default_rng(seed).normal(0, 0.005, len(t))


@pytest.fixture(scope="module")
def regular() -> tuple[np.ndarray, np.ndarray]:
    """A 75 bpm rhythm over 90 s with one premature beat (index 40) and one wide beat (index 60)."""
    times = np.arange(1.0, 89.0, 0.8)
    times[40] -= 0.3  # 300 ms early: premature
    return times, synthetic_ecg(times, 90.0, wide={60})


def test_window_measures_p_wave_qrs_and_amplitude_in_millivolts(regular):
    times, signal = regular
    config = RecordBeatConfig(leads=1)
    peaks = np.round(times * FS).astype(int) + 5  # detections 14 ms late: refined back to the R peak
    refined, frame = record_features(signal, FS, peaks, config)
    assert np.abs(refined - np.round(times * FS)).max() <= 1
    normal = frame.drop(index=[0, 40, 41, 60, 61])
    # amplitudes in mV after the band-pass, not min-max scaled: the R peak and the P wave are kept
    assert normal["a_r_amp"].median() == pytest.approx(QRS_AMP, rel=0.15)
    assert normal["a_p_max"].median() == pytest.approx(P_AMP, abs=0.06)
    assert normal["a_t_max"].median() == pytest.approx(T_AMP, abs=0.1)
    assert normal["a_t_peak_ms"].median() == pytest.approx(T_OFFSET_S * 1000, abs=20)
    # the P wave sits in the window at its offset: the largest pre-R value of the decimated window
    window = normal[[c for c in frame.columns if c.startswith("a_w")]].to_numpy()
    offsets = config.offsets[:: config.window_step] / FS
    before = offsets < -0.08
    assert offsets[before][window[:, before].mean(axis=0).argmax()] == pytest.approx(P_OFFSET_S, abs=0.02)
    # QRS width: |x| above a quarter of the peak lasts 2 sigma sqrt(2 ln 4) for a Gaussian
    expected_ms = 2 * QRS_SIGMA_S * np.sqrt(2 * np.log(4)) * 1000
    assert normal["a_qrs_width_ms"].median() == pytest.approx(expected_ms, abs=8)
    # the wide beat is wider than the patient's usual beat, and unlike it
    assert frame.loc[60, "a_rel_qrs_width_ms"] == pytest.approx(2 * expected_ms, rel=0.3)  # 3 times as wide
    assert frame.loc[60, "a_tpl_corr_qrs"] < normal["a_tpl_corr_qrs"].min()
    # the premature beat: early against the recent beats and the patient's rhythm
    assert frame.loc[40, "rr_prev_recent"] == pytest.approx(0.5 / 0.8, rel=0.02)
    assert frame.loc[40, "rr_prev_patient"] == pytest.approx(0.5 / 0.8, rel=0.02)
    assert normal["rr_prev_recent"].between(0.98, 1.02).all()


def test_one_lead_strip_leaves_the_second_leads_measures_unknown(regular):
    times, signal = regular
    peaks = np.round(times * FS).astype(int)
    _, frame = record_features(signal, FS, peaks, RecordBeatConfig(leads=2))
    second = [c for c in frame.columns if c.startswith("b_")]
    assert second and frame[second].isna().all().all()
    assert frame[[c for c in frame.columns if c.startswith("a_")]].iloc[1:].notna().all().all()
    assert list(frame.columns) == feature_columns(RecordBeatConfig(leads=2))


def test_other_sampling_rates_give_the_same_measures(regular):
    times, signal = regular
    from scipy.signal import resample_poly

    config = RecordBeatConfig(leads=1)
    _, at_360 = record_features(signal, FS, np.round(times * FS).astype(int), config)
    refined, at_500 = record_features(resample_poly(signal, 25, 18), 500, np.round(times * 500).astype(int), config)
    assert np.abs(refined - np.round(times * 500)).max() <= 2
    for column, tolerance in (("a_r_amp", 0.03), ("a_qrs_width_ms", 3.0), ("rr_prev", 0.003), ("a_tpl_corr", 0.02)):
        assert np.allclose(at_500[column].iloc[5:], at_360[column].iloc[5:], atol=tolerance), column


def test_patient_context_never_looks_past_the_beat():
    """A beat's rhythm and template features are the same whatever comes after its next R peak, and
    whatever lies more than the declared history (and template beats) before it."""
    rng = np.random.default_rng(3)
    times = np.cumsum(rng.uniform(0.6, 1.1, 800))  # about 11 minutes
    signal = synthetic_ecg(times, times[-1] + 2, wide=set(range(0, 800, 7)), seed=1)
    config = RecordBeatConfig(leads=1, patient_window_s=120.0, template_beats=20)
    peaks = np.round(times * FS).astype(int)
    _, full = record_features(signal, FS, peaks, config)
    i = 500
    # everything after the next R peak removed (the signal itself kept: only the beats change)
    _, cut = record_features(signal, FS, peaks[: i + 2], config)
    pd.testing.assert_series_equal(full.loc[i], cut.loc[i], check_names=False)
    # everything more than the history before the beat removed: the context columns agree
    first = max(int(np.searchsorted(times, times[i] - config.history_seconds)) - 1, 0)
    first = min(first, i - config.template_beats - 1)
    _, late = record_features(signal, FS, peaks[first:], config)
    context = [c for c in full.columns if c.startswith(("rr_", "a_tpl_", "a_rel_"))]
    pd.testing.assert_series_equal(full.loc[i, context], late.loc[i - first, context], check_names=False)


def test_rhythm_context_uses_medians_of_the_past_only():
    peaks = np.array([0, 360, 720, 1000, 1440, 1800], dtype=float)  # a premature beat at 1000
    rhythm = rhythm_features(peaks, RecordBeatConfig())
    assert np.isnan(rhythm["rr_prev"][0]) and np.isnan(rhythm["rr_next"][-1])
    assert rhythm["rr_prev_recent"][3] == pytest.approx(280 / 360)
    assert rhythm["rr_patient"][3] == pytest.approx(1.0)  # the median: the premature interval barely counts


def test_model_config_refuses_groups_the_beats_were_not_measured_with():
    params = {"beat": {"groups": ["window", "rhythm"], "leads": 1}, "model": {"groups": ["template"], "leads": 1}}
    with pytest.raises(ValueError, match="template"):
        model_config(params)
    with pytest.raises(ValueError, match="unknown record feature groups"):
        RecordBeatConfig(groups=("nope",))


def test_patient_folds_are_record_disjoint_and_cover_every_record():
    rng = np.random.default_rng(0)
    records = np.repeat([f"r{i:02d}" for i in range(22)], rng.integers(50, 300, 22))
    labels = rng.choice(5, size=len(records), p=[0.85, 0.04, 0.08, 0.02, 0.01])
    folds = patient_folds(records, labels, 5, seed=42)
    assert set(folds.tolist()) == set(range(5))
    per_record = pd.Series(folds).groupby(records).nunique()
    assert (per_record == 1).all(), "a record is split over folds"
    assert np.array_equal(folds, patient_folds(records, labels, 5, seed=42))
    with pytest.raises(ValueError, match="between 2"):
        patient_folds(records, labels, 23, seed=0)


def test_ec57_matching_of_missed_extra_and_late_beats():
    fs = 1000
    reference = np.array([1000, 2000, 3000, 4000])
    detected = np.array([1010, 3151, 3850, 5000])  # 10 ms late; 151 ms late; 150 ms early; an extra beat
    match = match_beats(reference, detected, fs)
    assert match.reference.tolist() == [0, 3]
    assert match.detected.tolist() == [0, 2]
    assert (match.missed, match.extra) == (2, 2)
    empty = match_beats(reference, np.array([], dtype=int), fs)
    assert (empty.missed, empty.extra) == (4, 0)


def test_running_template_median_is_numpy_median_of_the_preceding_beats():
    rng = np.random.default_rng(5)
    values = np.round(rng.normal(size=(200, 3, 4)), 1)  # ties, and (n, ...) shapes
    values[50:53, 1, 2] = np.nan
    for beats in (1, 2, 7, 30):
        got = _running_median(values, beats)
        assert np.isnan(got[0]).all()
        for i in range(1, len(values)):
            np.testing.assert_array_equal(got[i], np.median(values[max(0, i - beats) : i], axis=0))
    assert _running_median(np.zeros((0, 5)), 30).shape == (0, 5)


def test_baseline_by_column_equals_the_two_dimensional_median_filter():
    from scipy.ndimage import median_filter
    from scipy.signal import butter, sosfiltfilt

    config = RecordBeatConfig()
    signal = np.cumsum(np.random.default_rng(2).normal(0, 0.05, (20_000, 2)), axis=0)  # wander on two leads
    first, second = (max(1, round(s * config.fs)) | 1 for s in config.baseline_s)
    baseline = median_filter(median_filter(signal, size=(first, 1), mode="nearest"), size=(second, 1), mode="nearest")
    sos = butter(2, config.lowpass_hz, btype="lowpass", fs=config.fs, output="sos")
    np.testing.assert_array_equal(condition(signal, config), sosfiltfilt(sos, signal - baseline, axis=0))
