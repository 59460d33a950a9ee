"""The recording's own reference beat and rhythm on synthetic strips with a known answer: ectopic beats
as the majority, a bigeminy, a wide dominant beat, an irregular rhythm without P waves, and the
same classes' measures under a gain change, another sampling rate and a shorter future."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.signal import resample_poly

from ecgbeats.features.record import RecordBeatConfig, record_features
from ecgbeats.features.reference import AF_LABEL, REFERENCE_COLUMNS, ReferenceConfig, rhythm_context

FS = 360
CONFIG = RecordBeatConfig(leads=1, groups=("rhythm", "reference", "rhythm_refs"))


def gaussian(t: np.ndarray, centre: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((t - centre) / sigma) ** 2)


def strip(r_times: np.ndarray, *, p_wave: np.ndarray, wide: np.ndarray, fs: int = FS, seed: int = 0) -> np.ndarray:
    """One lead in mV: per beat a P wave 160 ms before R where ``p_wave`` says, a Gaussian QRS (three
    times as wide and with an opposite S where ``wide`` says), a T wave; baseline wander and noise."""
    seconds = r_times[-1] + 1.5
    t = np.arange(int(seconds * fs)) / fs
    signal = 0.3 * np.sin(2 * np.pi * 0.2 * t)
    for r, p, w in zip(r_times, p_wave, wide, strict=True):
        if p:
            signal += 0.15 * gaussian(t, r - 0.16, 0.02)
        if w:
            signal += 1.0 * gaussian(t, r, 0.036) - 0.5 * gaussian(t, r + 0.08, 0.03)
        else:
            signal += 1.2 * gaussian(t, r, 0.012)
        signal += 0.3 * gaussian(t, r + 0.3, 0.04)
    return signal + np.random.default_rng(seed).normal(0, 0.005, len(t))


def measure(r_times: np.ndarray, signal: np.ndarray, fs: int = FS) -> pd.DataFrame:
    _, frame = record_features(signal, fs, np.round(r_times * fs).astype(int), CONFIG)
    return frame


def ectopic_majority() -> tuple[np.ndarray, np.ndarray]:
    """As MIT-BIH 232: sinus beats (P wave) after 1.9-s pauses, each followed by 2 to 5 atrial ectopic
    beats (no visible P, the same QRS) at 0.73 s: two thirds of the beats are ectopic."""
    rng = np.random.default_rng(1)
    times, sinus = [1.0], [True]
    while times[-1] < 290:
        for _ in range(int(rng.integers(2, 6))):
            times.append(times[-1] + 0.73 + rng.normal(0, 0.01))
            sinus.append(False)
        times.append(times[-1] + 1.9 + rng.normal(0, 0.05))
        sinus.append(True)
    return np.array(times), np.array(sinus)


def test_the_reference_is_the_sinus_beat_where_ectopic_beats_are_the_majority():
    times, sinus = ectopic_majority()
    assert (~sinus).mean() > 0.6
    frame = measure(times, strip(times, p_wave=sinus, wide=np.zeros(len(times), bool)))
    late = np.cumsum(sinus) > 32  # once min_beats sinus beats are in the window
    assert (frame["ref_sinus"][late] == 1).all()
    assert frame["ref_rr"][late].median() == pytest.approx(1.9, abs=0.1)
    # the ectopic beats are early against the sinus rhythm, the sinus beats on time
    assert frame["rr_prev_ref"][late & ~sinus].median() == pytest.approx(0.73 / 1.9, abs=0.05)
    assert frame["rr_prev_ref"][late & sinus].median() == pytest.approx(1.0, abs=0.05)
    # every reference of the old kind calls the ectopic beats on time
    assert frame["rr_prev_mean_recent"][late & ~sinus].median() > 0.7
    # the P wave tells them apart; the QRS does not
    assert frame["p_wave"][sinus].median() > 0.08 > 0.02 > frame["p_wave"][~sinus].median()
    assert (frame["ref_qrs_corr"][late] > 0.95).all()
    assert frame["ref_p_corr"][late & sinus].median() > 0.8 > 0.5 > frame["ref_p_corr"][late & ~sinus].median()
    # a regular ectopic run with visible sinus P waves is not atrial fibrillation
    context = rhythm_context(
        frame["ctx_irregularity"].to_numpy(), frame["ctx_no_p_share"].to_numpy(), ReferenceConfig()
    )
    assert (context[late] != AF_LABEL).mean() > 0.9


def test_a_bigeminy_keeps_the_normal_beat_as_reference():
    """N (P wave, narrow) and V (no P, wide, 0.5 s early, then a compensatory pause) alternate."""
    times = np.cumsum(np.tile([1.1, 0.5], 120)) + 0.5
    ventricular = np.arange(len(times)) % 2 == 1
    frame = measure(times, strip(times, p_wave=~ventricular, wide=ventricular))
    late = np.arange(len(times)) > 80
    assert (frame["ref_sinus"][late] == 1).all()
    assert frame["ref_rr"][late].median() == pytest.approx(1.1, abs=0.02)
    assert frame["rr_prev_ref"][late & ventricular].median() == pytest.approx(0.5 / 1.1, abs=0.02)
    assert frame["ref_width_ratio"][late & ventricular].min() > 2
    assert frame["ref_width_ratio"][late & ~ventricular].median() == pytest.approx(1.0, abs=0.05)
    assert (
        frame["ref_qrs_corr"][late & ventricular].max() < 0.8 < 0.95 < frame["ref_qrs_corr"][late & ~ventricular].min()
    )


def test_a_wide_dominant_beat_is_the_reference_and_a_narrow_one_stands_out():
    """A bundle branch block: every sinus beat is wide (with its P wave); now and then a narrow one."""
    times = np.arange(1.0, 200.0, 0.8)
    narrow = np.arange(len(times)) % 25 == 12
    frame = measure(times, strip(times, p_wave=np.ones(len(times), bool), wide=~narrow))
    late = np.arange(len(times)) > 60
    wide = late & ~narrow
    assert frame["ref_width_ratio"][wide].median() == pytest.approx(1.0, abs=0.05)
    assert frame["ref_qrs_corr"][wide].min() > 0.95
    assert frame["rr_prev_ref"][wide].median() == pytest.approx(1.0, abs=0.02)
    assert frame["ref_width_ratio"][late & narrow].max() < 0.6


def test_an_irregular_rhythm_without_p_waves_is_atrial_fibrillation_and_a_sinus_arrhythmia_is_not():
    rng = np.random.default_rng(4)
    af_times = np.cumsum(rng.uniform(0.4, 1.2, 250))
    af = measure(af_times, strip(af_times, p_wave=np.zeros(250, bool), wide=np.zeros(250, bool)))
    config = ReferenceConfig()
    context = rhythm_context(af["ctx_irregularity"].to_numpy(), af["ctx_no_p_share"].to_numpy(), config)
    assert (context[20:] == AF_LABEL).mean() > 0.95
    assert (af["ref_sinus"][40:] == 0).all()  # no cluster has P waves: the largest one, marked not sinus
    # the same irregularity with P waves: a sinus arrhythmia, not fibrillation
    sinus = measure(af_times, strip(af_times, p_wave=np.ones(250, bool), wide=np.zeros(250, bool)))
    context = rhythm_context(sinus["ctx_irregularity"].to_numpy(), sinus["ctx_no_p_share"].to_numpy(), config)
    assert (context[20:] == "").all()


@pytest.fixture(scope="module")
def majority_strip() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    times, sinus = ectopic_majority()
    return times, sinus, strip(times, p_wave=sinus, wide=np.zeros(len(times), bool), seed=2)


def test_a_gain_change_leaves_the_reference_measures_as_they_were(majority_strip):
    times, _, signal = majority_strip
    plain, scaled = measure(times, signal), measure(times, 2.5 * signal)
    columns = list(REFERENCE_COLUMNS)
    np.testing.assert_allclose(scaled[columns].to_numpy(), plain[columns].to_numpy(), rtol=1e-4, atol=1e-4)


def test_another_sampling_rate_gives_the_same_reference(majority_strip):
    times, sinus, signal = majority_strip
    at_360 = measure(times, signal)
    at_500 = measure(times, resample_poly(signal, 25, 18), fs=500)
    late = np.cumsum(sinus) > 32
    for column, tolerance in (("rr_prev_ref", 0.01), ("ref_qrs_corr", 0.02), ("ref_width_ratio", 0.1)):
        assert np.allclose(at_500[column][late], at_360[column][late], atol=tolerance), column
    assert (at_500["p_wave"][late] > 0.05).to_numpy().tolist() == (at_360["p_wave"][late] > 0.05).to_numpy().tolist()


def test_a_beats_reference_measures_do_not_see_past_its_next_beat(majority_strip):
    times, _, signal = majority_strip
    peaks = np.round(times * FS).astype(int)
    i = 250
    _, full = record_features(signal, FS, peaks, CONFIG)
    _, cut = record_features(signal, FS, peaks[: i + 2], CONFIG)
    pd.testing.assert_series_equal(full.loc[i], cut.loc[i], check_names=False)


def test_the_reference_group_declares_its_look_back():
    config = RecordBeatConfig(groups=("reference",), patient_window_s=120.0, reference=ReferenceConfig(window_s=600.0))
    assert config.history_seconds == 600.0
    assert RecordBeatConfig.from_params(config.to_dict()) == config


def rule_measures(**columns: list[float]) -> pd.DataFrame:
    base = {"ref_sinus": 1.0, "ref_qrs_corr": 0.99, "rr_prev_ref": 1.0, "ref_p_corr": 0.95,
            "ctx_irregularity": 0.02, "ctx_no_p_share": 0.0}  # fmt: skip
    n = len(next(iter(columns.values())))
    return pd.DataFrame({k: columns.get(k, [v] * n) for k, v in base.items()})


def test_the_premature_rule_calls_an_early_beat_with_the_sinus_qrs_s_and_nothing_else():
    from ecgbeats.modelling.rhythm_rules import RhythmRules

    proba = np.tile([0.8, 0.1, 0.05, 0.04, 0.01], (5, 1))
    measures = rule_measures(
        rr_prev_ref=[0.42, 0.42, 0.42, 0.95, 0.42],
        ref_qrs_corr=[0.99, 0.5, 0.99, 0.99, 0.99],  # the second: another QRS (ventricular)
        ctx_irregularity=[0.02, 0.02, 0.3, 0.02, 0.02],  # the third: irregular without P waves
        ctx_no_p_share=[0.0, 0.0, 1.0, 0.0, 0.0],
        ref_sinus=[1.0, 1.0, 1.0, 1.0, 0.0],  # the last: no sinus reference to be early against
    )
    out = RhythmRules(premature=0.7, fibrillation=True).apply(proba, measures, ReferenceConfig())
    assert out.argmax(axis=1).tolist() == [1, 0, 0, 0, 0]
    np.testing.assert_allclose(out[0], [0.1, 0.8, 0.05, 0.04, 0.01])  # N and S exchanged: still a distribution
    np.testing.assert_array_equal(out[1:], proba[1:])
    np.testing.assert_array_equal(RhythmRules().apply(proba, measures, ReferenceConfig()), proba)  # rules off


def test_the_fibrillation_rule_calls_early_beats_in_atrial_fibrillation_n():
    from ecgbeats.modelling.rhythm_rules import RhythmRules

    proba = np.tile([0.3, 0.6, 0.05, 0.04, 0.01], (2, 1))
    measures = rule_measures(ctx_irregularity=[0.3, 0.02], ctx_no_p_share=[1.0, 1.0], rr_prev_ref=[0.6, 0.6])
    out = RhythmRules(fibrillation=True).apply(proba, measures, ReferenceConfig())
    assert out.argmax(axis=1).tolist() == [0, 1]
    with pytest.raises(ValueError, match="ref_sinus"):
        RhythmRules(fibrillation=True).apply(proba, measures.drop(columns="ref_sinus"), ReferenceConfig())


def test_the_rules_are_chosen_on_out_of_fold_predictions_and_off_when_they_do_not_pay():
    from ecgbeats.modelling.rhythm_rules import RhythmRules, choose_rules, rule_grid

    grid = rule_grid({"premature": [0.5, 0.7], "fibrillation": [False, True]})
    assert grid[0] == RhythmRules() and len(grid) == 5
    # ten early beats with the sinus QRS, half of them truly S: calling them S pays at 0.7, not at 0.5
    measures = rule_measures(rr_prev_ref=[0.6] * 10 + [1.0] * 10)
    y = np.array([1] * 5 + [0] * 5 + [0] * 8 + [2, 3])
    proba = np.zeros((20, 5))
    proba[np.arange(20), np.where(y == 1, 0, y)] = 1.0  # the model calls every S beat N
    best, table = choose_rules(y, proba, measures, grid, ReferenceConfig())
    assert best.premature == 0.7 and len(table) == len(grid)
    # the same beats all truly N: no rule pays, the rules stay off
    y_normal = np.where(y == 1, 0, y)
    best, _ = choose_rules(y_normal, proba, measures, grid, ReferenceConfig())
    assert best == RhythmRules()
