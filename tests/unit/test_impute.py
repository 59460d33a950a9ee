"""Missingness model and imputation: seeded gaps inside the signal only, methods fill only those."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecgbeats.data.beats import BEAT_SAMPLES
from ecgbeats.data.dataset import SAMPLE_COLUMNS
from ecgbeats.processing.impute import (
    METHODS,
    GapModel,
    KnnBeatImputer,
    apply_gaps,
    impute,
    impute_frame,
    reconstruction_error,
    simulate_gaps,
    unpadded_mask,
)


def _beats(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(60, 200, n)
    t = np.arange(BEAT_SAMPLES)[None, :]
    centre = rng.uniform(30, 50, (n, 1))
    samples = 0.3 + 0.7 * np.exp(-((t - 1) ** 2) / 3.0) + 0.2 * np.exp(-((t - centre) ** 2) / 50.0)
    samples[~unpadded_mask(lengths)] = 0.0
    return samples, lengths


def test_gaps_are_seeded_and_never_in_the_padding():
    samples, lengths = _beats()
    model = GapModel(dropout_rate=0.02, gaps_per_beat=1.0, gap_length=8)
    a = simulate_gaps(samples, lengths, model, seed=1)
    b = simulate_gaps(samples, lengths, model, seed=1)
    c = simulate_gaps(samples, lengths, model, seed=2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert not (a & ~unpadded_mask(lengths)).any()
    assert a.any()


def test_gap_rate_and_length_follow_params():
    samples, lengths = _beats(2000)
    inside = unpadded_mask(lengths).sum()
    drop = simulate_gaps(samples, lengths, GapModel(dropout_rate=0.05), seed=0)
    assert drop.sum() / inside == pytest.approx(0.05, rel=0.1)
    short = simulate_gaps(samples, lengths, GapModel(gaps_per_beat=1.0, gap_length=3), seed=0).sum()
    long = simulate_gaps(samples, lengths, GapModel(gaps_per_beat=1.0, gap_length=20), seed=0).sum()
    assert long > 3 * short
    assert not simulate_gaps(samples, lengths, GapModel(), seed=0).any()


@pytest.mark.parametrize("method", [m for m in METHODS if m != "none"])
def test_methods_fill_lost_samples_only(method):
    samples, lengths = _beats()
    lost = simulate_gaps(samples, lengths, GapModel(dropout_rate=0.02, gaps_per_beat=1.0, gap_length=6), seed=3)
    knn = KnnBeatImputer(k=3, reference_beats=150).fit(*_beats(300, seed=9))
    filled = impute(apply_gaps(samples, lost), lengths, method, knn=knn)
    assert np.isfinite(filled).all()
    np.testing.assert_array_equal(filled[~lost], samples[~lost])  # known samples and the padding untouched
    if method == "zero":
        assert (filled[lost] == 0).all()


def test_none_leaves_nan_and_unknown_method_refused():
    samples, lengths = _beats(10)
    lost = simulate_gaps(samples, lengths, GapModel(gaps_per_beat=2, gap_length=5), seed=0)
    assert np.isnan(impute(apply_gaps(samples, lost), lengths, "none")[lost]).all()
    with pytest.raises(ValueError, match="must be one of"):
        impute(samples, lengths, "mean")
    with pytest.raises(ValueError, match="fitted"):
        impute(samples, lengths, "knn")


def test_linear_is_exact_on_a_line_and_beats_zero_on_smooth_beats():
    lengths = np.array([100])
    line = np.zeros((1, BEAT_SAMPLES))
    line[0, :100] = np.linspace(0, 1, 100)
    lost = np.zeros_like(line, dtype=bool)
    lost[0, 40:50] = True
    np.testing.assert_allclose(impute(apply_gaps(line, lost), lengths, "linear"), line, atol=1e-12)
    samples, lengths = _beats(300)
    lost = simulate_gaps(samples, lengths, GapModel(gaps_per_beat=1.0, gap_length=6), seed=4)
    gapped = apply_gaps(samples, lost)
    zero = reconstruction_error(samples, impute(gapped, lengths, "zero"), lost)["rmse"]
    linear = reconstruction_error(samples, impute(gapped, lengths, "linear"), lost)["rmse"]
    pchip = reconstruction_error(samples, impute(gapped, lengths, "pchip"), lost)["rmse"]
    assert linear < zero and pchip < zero


def test_knn_is_fitted_on_reference_beats_and_recovers_a_known_shape():
    samples, lengths = _beats(300)
    knn = KnnBeatImputer(k=1, reference_beats=300).fit(samples, lengths)
    lost = np.zeros_like(samples, dtype=bool)
    lost[:20, 30:45] = True
    lost &= unpadded_mask(lengths)
    filled = knn.transform(apply_gaps(samples, lost), lengths)
    np.testing.assert_allclose(filled[lost], samples[lost], atol=1e-9)  # its own copy is the nearest beat
    with pytest.raises(RuntimeError):
        KnnBeatImputer().transform(samples, lengths)


def test_impute_frame_is_a_no_op_without_lost_samples():
    samples, lengths = _beats(5)
    frame = pd.DataFrame(samples.astype(np.float32), columns=SAMPLE_COLUMNS).assign(length=lengths)
    assert impute_frame(frame, "linear") is frame
    gapped = frame.copy()
    gapped.loc[0, "s010"] = np.nan
    assert np.isfinite(impute_frame(gapped, "linear")[SAMPLE_COLUMNS].to_numpy()).all()


@pytest.mark.parametrize("method", ["zero", "linear", "pchip", "knn", "none"])
def test_all_missing_beat_and_wrong_shapes_are_refused_by_name(method):
    rng = np.random.default_rng(0)
    samples = rng.random((4, 187))
    lengths = np.array([187, 120, 90, 60])
    knn = KnnBeatImputer(k=2, reference_beats=4, seed=0).fit(samples, lengths)
    lost = samples.copy()
    lost[2, :90] = np.nan  # every sample of row 2's signal lost; its padding is not signal
    with pytest.raises(ValueError, match=r"no sample left before the padding.*rows \[2\]"):
        impute(lost, lengths, method, knn=knn)
    with pytest.raises(ValueError, match="rows of 187 samples"):
        impute(samples[:, :180], lengths, method, knn=knn)
    with pytest.raises(ValueError, match="4 beats but 3 lengths"):
        impute(samples, lengths[:3], method, knn=knn)


def test_knn_with_few_reference_beats_and_a_table_without_samples_are_refused_by_name():
    rng = np.random.default_rng(0)
    samples, lengths = rng.random((3, 187)), np.array([150, 150, 150])
    with pytest.raises(ValueError, match="k=5 needs at least 5 reference beats, got 3"):
        KnnBeatImputer(k=5, reference_beats=100, seed=0).fit(samples, lengths)
    knn = KnnBeatImputer(k=3, reference_beats=100, seed=0).fit(samples, lengths)  # k = every reference beat
    gapped = samples.copy()
    gapped[0, 20:30] = np.nan
    filled = knn.transform(gapped, lengths)
    assert np.isfinite(filled[0, :150]).all()
    frame = pd.DataFrame(samples[:, :180], columns=SAMPLE_COLUMNS[:180]).assign(length=lengths)
    with pytest.raises(ValueError, match=r"missing \['s180'"):
        impute_frame(frame, "linear")


def test_simulated_gaps_always_keep_the_r_peak():
    samples = np.zeros((200, 187))
    lengths = np.full(200, 5)
    lost = simulate_gaps(samples, lengths, GapModel(dropout_rate=0.9, gaps_per_beat=5, gap_length=50), seed=1)
    assert not lost[:, 0].any() and lost[:, 1:5].mean() > 0.9
