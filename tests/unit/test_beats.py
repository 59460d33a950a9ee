from __future__ import annotations

import numpy as np
import pytest

from ecgbeats.data.beats import BEAT_SAMPLES, cut_beats, minmax_scale, rr_intervals


def test_beat_runs_from_its_peak_to_the_next_plus_a_fifth_of_the_following_interval():
    signal = np.arange(2000)  # a ramp: each kept sample shows which source sample it came from
    peaks = np.array([100, 400, 700, 1000])
    beats = cut_beats(signal, 360, peaks)
    assert len(beats.samples) == 3  # the last peak bounds its predecessor but yields no beat
    # beat 0: samples 100 .. 400 + 300 // 5 = 460, every third: 100, 103, ..., 457 -> 120 samples
    assert beats.lengths[0] == 120
    # beat 2: the stretch after the last peak runs to the signal's end: 1000 + 1000 // 5 = 1200
    assert beats.lengths[2] == len(range(700, 1200, 3))
    row = beats.samples[0]
    np.testing.assert_allclose(row[:120], (np.arange(100, 460, 3) - 100) / 357, rtol=1e-6)
    assert (row[120:] == 0).all()


def test_rows_are_scaled_to_unit_range_from_the_r_peak():
    rng = np.random.default_rng(0)
    signal = rng.integers(-500, 500, size=1800)
    beats = cut_beats(signal, 360, np.array([50, 350, 640, 990, 1300, 1600]))
    assert (beats.lengths <= BEAT_SAMPLES).all()
    for row, length in zip(beats.samples, beats.lengths, strict=True):
        part = row[:length]
        assert part.min() == 0 and part.max() == pytest.approx(1)
        assert row.dtype == np.float32 and row.shape == (BEAT_SAMPLES,)
    expected = minmax_scale(signal[50 : 350 + 290 // 5 : 3])[0]
    assert beats.samples[0, 0] == pytest.approx(expected)


def test_long_beats_are_cut_to_the_row_length_after_scaling():
    signal = np.concatenate([np.zeros(100), np.linspace(0, 1, 900), np.full(100, 2.0)])
    beats = cut_beats(signal, 360, np.array([0, 900, 1000]))
    assert beats.lengths[0] == len(range(0, 920, 3)) > BEAT_SAMPLES
    assert beats.samples[0].max() < 1  # the beat's maximum lies past the 187th sample


def test_flat_beat_becomes_zeros_not_nan():
    beats = cut_beats(np.full(1000, 7), 360, np.array([10, 300, 600]))
    assert np.isfinite(beats.samples).all() and (beats.samples == 0).all()


def test_other_sampling_rates_are_resampled_to_the_source_rate_first():
    t360 = np.arange(0, 10, 1 / 360)
    t250 = np.arange(0, 10, 1 / 250)
    wave = lambda t: np.sin(2 * np.pi * 1.1 * t) + 0.3 * np.sin(2 * np.pi * 5 * t)  # noqa: E731
    peaks_s = np.array([1.0, 2.0, 3.1, 4.0])
    at360 = cut_beats(wave(t360), 360, np.round(peaks_s * 360).astype(int))
    at250 = cut_beats(wave(t250), 250, np.round(peaks_s * 250).astype(int))
    assert np.abs(at360.lengths - at250.lengths).max() <= 1
    n = min(at360.lengths.min(), at250.lengths.min())
    assert np.abs(at360.samples[:, :n] - at250.samples[:, :n]).max() < 0.03


@pytest.mark.parametrize(
    ("peaks", "message"),
    [([300, 200], "strictly increasing"), ([], "non-empty"), ([10, 5000], "inside the signal")],
)
def test_bad_peaks_are_rejected(peaks, message):
    with pytest.raises(ValueError, match=message):
        cut_beats(np.zeros(1000), 360, np.array(peaks))


def test_rr_intervals_previous_next_and_local_average():
    peaks = np.array([0, 360, 720, 900, 1260, 1620])  # a premature beat at 900
    rr = rr_intervals(peaks, 360, local_beats=2)
    np.testing.assert_allclose(rr["rr_prev"][1:], [1, 1, 0.5, 1, 1])
    np.testing.assert_allclose(rr["rr_next"][:-1], [1, 1, 0.5, 1, 1])
    assert np.isnan(rr["rr_prev"][0]) and np.isnan(rr["rr_next"][-1])
    # beat 3 (index 3): intervals 1..4 -> (1 + 0.5 + 1 + 1) / 4
    assert rr["rr_local"][3] == pytest.approx(3.5 / 4)
    assert rr["rr_prev"][3] / rr["rr_local"][3] < 0.6


def test_a_non_beat_annotation_ends_the_beat_before_the_next_r_peak():
    # peaks at 0, 300 and 600; a rhythm or noise annotation at 150 ends the first beat there, plus a
    # fifth of the interval to the next annotation (the peak at 300): 150 + 150 // 5 = 180
    signal = np.arange(900, dtype=float)
    beats = cut_beats(signal, 360, np.array([0, 300, 600]), bounds=np.array([0, 150, 300, 600]))
    plain = cut_beats(signal, 360, np.array([0, 300, 600]))
    assert beats.lengths.tolist() == [len(range(0, 180, 3)), plain.lengths[1]]
    assert plain.lengths[0] == len(range(0, 300 + 300 // 5, 3))


def test_a_non_beat_annotation_after_the_next_r_peak_shortens_the_tail():
    # the first beat ends at the next R peak (300), plus a fifth of the interval to the next annotation
    # of any type: a signal-quality mark at 450 gives 300 + 150 // 5 = 330, not 300 + 300 // 5 = 360
    signal = np.arange(900, dtype=float)
    beats = cut_beats(signal, 360, np.array([0, 300, 600]), bounds=np.array([0, 300, 450, 600]))
    assert beats.lengths[0] == len(range(0, 330, 3))
    # the second beat is bounded by the mark at 450 itself: 450 + (600 - 450) // 5 = 480
    assert beats.lengths[1] == len(range(300, 480, 3))
    assert cut_beats(signal, 360, np.array([0, 300, 600])).lengths[0] == len(range(0, 360, 3))


def test_bounds_outside_the_signal_are_rejected():
    with pytest.raises(ValueError, match="bounds"):
        cut_beats(np.zeros(100), 360, np.array([10, 50]), bounds=np.array([10, 50, 200]))
