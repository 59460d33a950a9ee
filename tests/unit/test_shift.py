"""Shift transforms (shape, determinism, severity 0 = identity, monotone), label shift, drift, and the shift stage."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from ecgbeats.analysis import shift, shift_report
from ecgbeats.data import sampling
from ecgbeats.data.aami import CLASS_NAMES
from ecgbeats.data.beats import BEAT_SAMPLES
from ecgbeats.data.dataset import SAMPLE_COLUMNS
from ecgbeats.data.sampling import stratified_pick
from ecgbeats.features.groups import build_features
from ecgbeats.modelling.bundle import save_bundle
from ecgbeats.modelling.model import predict_proba, train_booster
from ecgbeats.operations.drift import build_profile
from ecgbeats.processing.impute import KnnBeatImputer
from stages import shift as stage
from tests.conftest import FIXTURE_MIRROR, ROOT
from tests.model.conftest import FIXTURE_TRAIN_PARAMS, GROUPS, bundle_meta

OPTIONS = {
    "noise": {"snr_db": 25},
    "baseline_wander": {"amplitude": 0.1},
    "gain": {"sigma": 0.15},
    "powerline": {"amplitude": 0.05, "freq_hz": 50.0},
    "time_stretch": {"change": -0.08},
    "dropout": {"dropout_rate": 0.02, "gaps_per_beat": 0.5, "gap_length": 6, "method": "linear"},
    "sampling": {"pipelines": [{"fs": 250}, {"fs": 250, "bandpass": [0.5, 40]}]},
}
PER_BEAT = [k for k in shift.KINDS if k != "sampling"]


@pytest.fixture(scope="module")
def beats(fixture_beats) -> pd.DataFrame:
    index = sampling.proportional_subsample(fixture_beats["label"].to_numpy(), 300, seed=0)
    return fixture_beats.iloc[index].reset_index(drop=True)


def _samples(frame: pd.DataFrame) -> np.ndarray:
    return frame[SAMPLE_COLUMNS].to_numpy(dtype=np.float64)


def _change(a: pd.DataFrame, b: pd.DataFrame) -> float:
    return float(np.abs(_samples(a) - _samples(b)).mean())


@pytest.mark.parametrize("kind", PER_BEAT)
def test_per_beat_shift_shape_determinism_identity_and_severity(beats, kind):
    assert (beats["length"] > BEAT_SAMPLES).any()  # beats cut at 187 samples are covered too
    # severity 0 runs the transform with zero magnitude: the same beats, up to float round-off
    identity = shift.shift_beats(beats, kind, 0, seed=1, options=OPTIONS[kind])
    pd.testing.assert_frame_equal(identity, beats, check_exact=False, atol=1e-6, rtol=0)
    # ... and where the magnitude is continuous, a small severity is a small change for every beat, cut ones too
    if kind in ("noise", "baseline_wander", "gain", "powerline"):
        small = shift.shift_beats(beats, kind, 1e-3, seed=1, options=OPTIONS[kind])
        assert 0 < np.abs(_samples(small) - _samples(beats)).max() < 1e-2
    once = shift.shift_beats(beats, kind, 1, seed=1, options=OPTIONS[kind])
    again = shift.shift_beats(beats, kind, 1, seed=1, options=OPTIONS[kind])
    pd.testing.assert_frame_equal(once, again)
    assert list(once.columns) == list(beats.columns) and len(once) == len(beats)
    assert once.dtypes.equals(beats.dtypes)
    stronger = shift.shift_beats(beats, kind, 2, seed=1, options=OPTIONS[kind])
    assert 0 < _change(once, beats) < _change(stronger, beats)
    # the format of a real beat: [0, 1] over the unpadded part, zero padding after it
    samples, lengths = _samples(stronger), np.clip(stronger["length"].to_numpy(), 1, BEAT_SAMPLES)
    inside = np.arange(BEAT_SAMPLES)[None, :] < lengths[:, None]
    assert np.all(samples[~inside] == 0) and samples.min() >= 0 and samples.max() <= 1 + 1e-6


def test_time_stretch_moves_length_and_rr_together(beats):
    out = shift.shift_beats(beats, "time_stretch", 2, seed=0, options={"change": -0.1})
    short = beats["length"].to_numpy() <= BEAT_SAMPLES
    np.testing.assert_allclose(
        out["length"].to_numpy()[short], np.round(beats["length"].to_numpy()[short] * 0.8), atol=1
    )
    # RR follows the realised window: the factor up to the rounding of the new length (1/length)
    has_rr = beats["rr_prev"].notna().to_numpy() & short
    ratio = (out["rr_prev"] / beats["rr_prev"]).to_numpy()[has_rr]
    np.testing.assert_allclose(ratio, 0.8, atol=0.5 / beats["length"].to_numpy()[has_rr].min() + 1e-3)


def test_uniform_gain_is_removed_by_the_per_beat_scaling(beats):
    out = shift.per_beat(beats, lambda x, rng: (x * 3.0 + 1.0, 1.0, 0), seed=0)
    np.testing.assert_allclose(_samples(out), _samples(beats), atol=1e-6)  # cut beats keep their range


def test_sampling_recut_rebuilds_the_ingested_beats_and_changes_with_the_pipeline(beats):
    rebuilt = shift.recut_beats(beats, FIXTURE_MIRROR)
    np.testing.assert_array_equal(_samples(rebuilt), _samples(beats))
    np.testing.assert_array_equal(rebuilt["length"].to_numpy(), beats["length"].to_numpy())
    options = OPTIONS["sampling"]
    identity = shift.shift_beats(beats, "sampling", 0, seed=0, options=options, raw_dir=FIXTURE_MIRROR)
    pd.testing.assert_frame_equal(identity, beats)
    first = shift.shift_beats(beats, "sampling", 1, seed=0, options=options, raw_dir=FIXTURE_MIRROR)
    second = shift.shift_beats(beats, "sampling", 2, seed=0, options=options, raw_dir=FIXTURE_MIRROR)
    assert 0 < _change(first, beats) < _change(second, beats)
    assert shift.level("sampling", 2, options) == "250 Hz device, 0.5-40 Hz band-pass"


def test_unknown_kind_and_negative_severity_raise(beats):
    with pytest.raises(ValueError, match="unknown shift"):
        shift.shift_beats(beats, "tilt", 1, seed=0)
    with pytest.raises(ValueError, match="severity"):
        shift.shift_beats(beats, "noise", -1, seed=0)


def test_noise_level_is_the_snr():
    assert shift.level("noise", 2, {"snr_db": 30}) == "SNR 24 dB"
    assert shift.level("noise", 0, {}) == "none"


def test_label_shift_weights_reach_the_target_and_move_precision_not_recall():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [900, 50, 50])
    pred = np.where(rng.random(len(y)) < 0.8, y, (y + 1) % 3)  # 80 % right, errors spread
    target = shift.scaled_prevalence(y, {"S": 4})
    assert target[1] == pytest.approx(0.2 / (0.9 + 0.2 + 0.05))
    weights = shift.prevalence_weights(y, target)
    np.testing.assert_allclose(np.bincount(y, weights=weights, minlength=5) / weights.sum(), target)
    plain, shifted = shift.set_scores(y, pred), shift.set_scores(y, pred, weights)
    assert shifted["per_class"]["S"]["recall"] == pytest.approx(plain["per_class"]["S"]["recall"])
    assert shifted["per_class"]["S"]["precision"] > plain["per_class"]["S"]["precision"]
    drawn = shift.resample_to_prevalence(y, target, 1000, seed=0)
    np.testing.assert_allclose(np.bincount(y[drawn], minlength=5) / len(drawn), target, atol=0.002)
    rows = shift.label_shift_table(y, pred, {"as is": {}, "S x4": {"S": 4}}, seed=0, resample_n=500)
    assert [r["scenario"] for r in rows] == ["as is", "S x4"]
    with pytest.raises(ValueError, match="absent"):
        shift.prevalence_weights(y, [0.5, 0.1, 0.1, 0.3, 0.0])


def test_bootstrap_gap_is_zero_for_the_same_set_and_record_intervals_are_wider():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 2000)
    pred = np.where(rng.random(2000) < 0.85, y, 0)
    records = np.repeat(np.arange(20), 100)
    same = shift.bootstrap_gap(y, pred, y, pred, n_boot=50, seed=0)
    assert same["macro_f1"]["gap"] == 0
    pred_b = np.where(rng.random(2000) < 0.7, y, 0)
    beat = shift.bootstrap_gap(y, pred, y, pred_b, n_boot=200, seed=0)
    record = shift.bootstrap_gap(y, pred, y, pred_b, n_boot=200, seed=0, groups_a=records, groups_b=records)
    assert beat["macro_f1"]["gap"] < 0 and beat["macro_f1"]["ci95"]["high"] < 0
    assert record["per_class"]["S"]["f1"]["gap"] == beat["per_class"]["S"]["f1"]["gap"]
    paired = shift.paired_bootstrap(y, pred, pred_b, records, n_boot=200, seed=0)
    assert paired["gap"] < 0 and paired["share_positive"] < 0.05


def test_drift_separates_a_shifted_from_an_unshifted_sample(fixture_beats):
    pick = stratified_pick(fixture_beats["label"].to_numpy(), 0.5, seed=0)
    reference, current = fixture_beats[pick].reset_index(drop=True), fixture_beats[~pick].reset_index(drop=True)
    profile = build_profile(reference, reference["label"].to_numpy(), list(CLASS_NAMES))
    clean = shift.drift_summary(profile, current, current["label"].to_numpy())
    noisy_beats = shift.shift_beats(current, "powerline", 4, seed=0, options={"amplitude": 0.05})
    noisy = shift.drift_summary(profile, noisy_beats, current["label"].to_numpy())
    assert clean["level"] == "stable" and not clean["drift"]
    assert noisy["drift"] and noisy["max_feature_psi"] > 0.25 > 2 * clean["max_feature_psi"]


def test_record_relative_is_causal_and_centred_on_the_patient():
    frame = pd.DataFrame({"record": ["a"] * 3 + ["b"] * 2, "beat_index": [2, 0, 1, 0, 1],
                          "rr_prev": [1.0, 2.0, 3.0, 1.0, 1.0], "rr_next": 1.0, "length": 100,
                          **{c: 0.0 for c in SAMPLE_COLUMNS}})  # fmt: skip
    frame["s000"] = [3.0, 1.0, 2.0, 5.0, 5.0]
    out = shift.record_relative(frame, window=2)
    # record a in beat order: 1, 2, 3 -> running means (window 2) 1, 1.5, 2.5
    np.testing.assert_allclose(out["rel_s000"], [3.0 - 2.5, 0.0, 2.0 - 1.5, 0.0, 0.0])
    # rr_prev in beat order 2, 3, 1 -> running means 2, 2.5, 2
    np.testing.assert_allclose(out["rr_prev_rec"], [1.0 / 2.0, 1.0, 3.0 / 2.5, 1.0, 1.0])


def _shift_params(**kinds) -> dict:
    return {
        "seed": 3, "bootstrap": 10, "num_threads": 1, "subsample": {"test": 50, "holdout": 60},
        "kinds": kinds, "label_shift": {"resample_beats": 100, "scenarios": {"as is": None}},
        "premature_ratio": 0.85, "min_template_beats": 5, "report_records": 3,
        "mitigations": {"plain": None, "sqrt": {"class_weight": "sqrt"}},
    }  # fmt: skip


def test_settings_take_the_pipeline_dropout_method_unless_the_kind_names_one():
    params = _shift_params(dropout={"severities": [0, 1]}, noise={"severities": [0, 1]})
    settings = shift_report.ShiftSettings.from_params(params, dropout_method="knn")
    assert settings.kinds["dropout"] == {"severities": [0, 1], "method": "knn"} and settings.dropout_method == "knn"
    assert "method" not in params["kinds"]["dropout"]  # the params are not modified
    mitigation = shift_report.MitigationSettings.from_params(params)
    assert mitigation.baseline == "plain" and mitigation.variants["plain"] == {} and mitigation.num_threads == 1
    assert settings.subsample == {"test": 50, "holdout": 60} and settings.label_resample_beats == 100
    named = _shift_params(dropout={"severities": [1], "method": "pchip"})
    assert shift_report.ShiftSettings.from_params(named, dropout_method="knn").dropout_method == "pchip"
    assert shift_report.ShiftSettings.from_params(_shift_params()).dropout_method == "linear"


def test_dropout_imputer_is_fitted_only_for_knn(beats):
    knn = shift_report.ShiftSettings.from_params(_shift_params(dropout={"severities": [1]}), dropout_method="knn")
    imputer = shift_report.dropout_imputer(knn, beats, k=3, reference_beats=50)
    assert isinstance(imputer, KnnBeatImputer) and imputer.reference.shape == (50, BEAT_SAMPLES)
    linear = shift_report.ShiftSettings.from_params(_shift_params(dropout={"severities": [1]}))
    assert shift_report.dropout_imputer(linear, beats, k=3, reference_beats=50) is None


# ---------------------------------------------------------------- the stage on the fixtures


@pytest.fixture(scope="module")
def stage_inputs(tmp_path_factory, fixture_beats):
    root = tmp_path_factory.mktemp("shift")
    records = fixture_beats["record"].astype(str)
    holdout = fixture_beats[records.isin(["213", "232"])].reset_index(drop=True)
    rest = fixture_beats[~records.isin(["213", "232"])].reset_index(drop=True)
    take = stratified_pick(rest["label"].to_numpy(), 0.4, seed=0)
    train, other = rest[~take].reset_index(drop=True), rest[take].reset_index(drop=True)
    half = stratified_pick(other["label"].to_numpy(), 0.5, seed=0)
    sets = {"train": train, "val": other[~half], "test": other[half], "holdout": holdout}
    data = root / "data"
    data.mkdir()
    for name, frame in sets.items():
        frame.reset_index(drop=True).to_parquet(data / f"{name}.parquet", index=False)
    train_params = {**FIXTURE_TRAIN_PARAMS, "seed": 0, "num_boost_round": 40, "features": {"interpatient": GROUPS}}
    x_train, x_val = build_features(train, GROUPS), build_features(sets["val"], GROUPS)
    booster, _ = train_booster(x_train, train["label"].to_numpy(), x_val, sets["val"]["label"].to_numpy(),
                               train_params, seed=0)  # fmt: skip
    predicted = predict_proba(booster, x_train).argmax(axis=1)
    save_bundle(root / "model", booster, bundle_meta(GROUPS, x_train.columns),
                reference=build_profile(x_train, predicted, list(CLASS_NAMES)))  # fmt: skip
    shift_params = {
        "seed": 0, "bootstrap": 20, "num_threads": 1, "subsample": {"test": 200, "holdout": 300},
        "kinds": {kind: {"severities": [0, 1], **options} for kind, options in OPTIONS.items()},
        "label_shift": {"resample_beats": 500, "scenarios": {"holdout": {}, "S_x3": {"S": 3}}},
        "premature_ratio": 0.85, "min_template_beats": 5, "report_records": 3,
        "mitigation_baseline": "baseline",
        "mitigations": {"baseline": {}, "relative": {"record_relative": {"window": 20}},
                        "augment": {"augment": {"min_beats": 5, "per_beat": 1, "seed": 0}}},
    }  # fmt: skip
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump({"train": train_params, "shift": shift_params}))
    return root, params


def test_stage_writes_metrics_plots_and_a_complete_report(stage_inputs):
    root, params = stage_inputs
    out = root / "out"
    template = ROOT / "reports" / "templates" / "shift.md"
    args = ["--model", str(root / "model"), "--data", str(root / "data"), "--raw", str(FIXTURE_MIRROR),
            "--params", str(params), "--metrics", str(out / "shift.json"), "--plots", str(out / "plots"),
            "--report", str(out / "shift.md"), "--template", str(template)]  # fmt: skip
    assert stage.main(args) == 0
    metrics = json.loads((out / "shift.json").read_text())
    assert set(metrics["synthetic"]) == set(OPTIONS)
    assert {"patient_shift", "label_shift", "drift", "causes", "sets"} <= set(metrics)
    assert "mitigations" not in metrics and "seconds" not in metrics  # a study; timings are not metrics
    for kind, rows in metrics["synthetic"].items():
        assert [r["severity"] for r in rows] == [0, 1], kind
    plots = {p.name for p in (out / "plots").iterdir()}
    assert plots == set(shift_report.plot_data(metrics)) | set(shift_report.FIGURES)
    assert {f"{kind}.csv" for kind in OPTIONS} | {"degradation.png", "causes.png", "label_shift.csv"} <= plots
    curve = pd.read_csv(out / "plots" / "noise.csv")
    assert {"severity", "test_macro_f1", "holdout_macro_f1", "holdout_S_f1"} <= set(curve.columns)
    report = (out / "shift.md").read_text()
    assert "$" not in report and "shift_mitigations.md" in report
    again = root / "again"
    assert stage.main([a.replace(str(out), str(again)) for a in args]) == 0
    for path in sorted(out.rglob("*")):  # the same inputs and params give the same bytes
        if path.is_file():
            assert path.read_bytes() == (again / path.relative_to(out)).read_bytes(), path


def test_mitigation_study_writes_metrics_plots_and_a_complete_report(stage_inputs):
    from studies import shift_mitigations

    root, params = stage_inputs
    out = root / "mitigations"
    template = ROOT / "reports" / "templates" / "shift_mitigations.md"
    args = ["--data", str(root / "data"), "--params", str(params), "--metrics", str(out / "m.json"),
            "--plots", str(out / "plots"), "--report", str(out / "m.md"), "--template", str(template)]  # fmt: skip
    assert shift_mitigations.main(args) == 0
    metrics = json.loads((out / "m.json").read_text())
    assert metrics["baseline"] == "baseline"
    assert set(metrics["variants"]) == {"baseline", "relative", "augment"}
    assert metrics["variants"]["baseline"]["holdout_vs_baseline"]["gap"] == 0
    assert {p.name for p in (out / "plots").iterdir()} == {"mitigations.csv", "mitigations.png"}
    report = (out / "m.md").read_text()
    assert "$" not in report and "| baseline |" in report


def test_proportional_subsample_has_exactly_n_beats_and_every_class():
    labels = np.r_[np.zeros(8000), np.ones(200), np.full(300, 2), np.full(7, 3), np.full(2, 4)].astype(int)
    for n in (4000, 10, 5):
        rows = sampling.proportional_subsample(labels, n, seed=0)
        assert len(rows) == len(np.unique(rows)) == n
        assert set(labels[rows]) == set(range(5))  # every class, however rare
    rows = sampling.proportional_subsample(labels, 4000, seed=0)
    np.testing.assert_allclose(np.bincount(labels[rows]) / 4000, np.bincount(labels) / len(labels), atol=0.002)
    np.testing.assert_array_equal(rows, sampling.proportional_subsample(labels, 4000, seed=0))
    assert len(sampling.proportional_subsample(labels, 10**6, seed=0)) == len(labels)
