"""Drift: the statistics, the reference profile in the bundle, the drift CLI, and the service gauges."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from scipy.stats import ks_2samp

from ecgbeats.data.dataset import SAMPLE_COLUMNS
from ecgbeats.features.groups import build_features
from ecgbeats.modelling.bundle import MANIFEST_FILE, REFERENCE_FILE, BundleError, load_bundle
from ecgbeats.operations import drift
from ecgbeats.serving import drift_cli
from ecgbeats.serving.api import create_app
from ecgbeats.serving.settings import Settings


@pytest.fixture(scope="module")
def samples(fixture_split, tmp_path_factory):
    """An unshifted sample (the validation split) and the same beats with noise, as parquet files."""
    _, val = fixture_split
    base = tmp_path_factory.mktemp("drift-samples")
    paths = {"unshifted": base / "unshifted.parquet", "shifted": base / "shifted.parquet"}
    val.to_parquet(paths["unshifted"])
    drift.synthetic_shift(val, "noise", 0.1, seed=1).to_parquet(paths["shifted"])
    return paths


# ---------------------------------------------------------------- statistics


def test_psi_is_zero_for_identical_shares_and_grows_with_the_shift():
    shares = [0.2, 0.3, 0.5]
    assert drift.psi(shares, shares) == pytest.approx(0.0)
    assert 0 < drift.psi(shares, [0.25, 0.3, 0.45]) < drift.psi(shares, [0.5, 0.3, 0.2])
    assert np.isfinite(drift.psi(shares, [0.0, 0.5, 0.5]))  # an empty bin is floored, not infinite


def test_bin_shares_keep_a_missing_bin():
    shares = drift.bin_shares(np.array([0.0, 1.0, 2.0, np.nan]), [0.5, 1.5])
    np.testing.assert_allclose(shares, [0.25, 0.25, 0.25, 0.25])


@pytest.mark.parametrize("shift", [0.0, 0.3])
@pytest.mark.parametrize("point_mass", [0.0, 0.16])  # 16 % of the beats have exactly 0 at 25 ms
def test_ks_from_quantiles_matches_the_exact_two_sample_statistic(shift, point_mass):
    rng = np.random.default_rng(0)
    reference, current = rng.normal(size=20_000), rng.normal(shift, 1, size=2_000)
    reference[: int(point_mass * len(reference))] = 0.0
    current[: int(point_mass * len(current))] = 0.0
    quantiles = np.quantile(reference, np.linspace(0, 1, drift.N_QUANTILES))
    assert drift.ks_from_quantiles(quantiles, current) == pytest.approx(
        ks_2samp(reference, current).statistic, abs=0.01
    )


def test_key_features_from_beats_and_from_model_features_agree(fixture_beats):
    from_beats = drift.key_features(fixture_beats)
    from_features = drift.key_features(build_features(fixture_beats, ["samples", "length", "rr"]))
    assert list(from_beats.columns) == list(drift.KEY_FEATURES)
    pd.testing.assert_frame_equal(from_beats, from_features, check_exact=False, rtol=1e-5)


def test_drift_flags_the_shifted_sample_and_not_the_unshifted_one(drift_bundle, fixture_split, samples):
    bundle = load_bundle(drift_bundle)
    reference = bundle.reference
    _, val = fixture_split
    codes = bundle.predict_proba(val).argmax(axis=1)
    unshifted = drift.compare(reference, val, codes)
    shifted = drift.compare(reference, pd.read_parquet(samples["shifted"]), codes)
    assert not unshifted["drift"] and unshifted["worst"]["psi"] < drift.PSI_MAJOR
    assert shifted["drift"] and shifted["features"]["unpadded_mean"]["level"] == "major"
    assert shifted["features"]["length"]["psi"] == unshifted["features"]["length"]["psi"]  # untouched


def test_a_gain_change_is_removed_by_the_per_beat_scaling(fixture_split):
    _, val = fixture_split
    gained = drift.synthetic_shift(val, "gain", 1.7)
    np.testing.assert_allclose(gained[SAMPLE_COLUMNS].to_numpy(), val[SAMPLE_COLUMNS].to_numpy(), atol=1e-6)


def test_class_mix_drift_sees_a_changed_mix():
    reference = [0.9, 0.05, 0.05, 0.0, 0.0]
    same = drift.class_mix_drift(reference, np.repeat([0, 1, 2], [900, 50, 50]))
    changed = drift.class_mix_drift(reference, np.repeat([0, 1, 2], [600, 300, 100]))
    assert same["psi"] == pytest.approx(0, abs=1e-6) and same["chi2_p_value"] > 0.5
    assert changed["psi"] > drift.PSI_MAJOR and changed["chi2_p_value"] < 1e-6


# ---------------------------------------------------------------- the profile in the bundle


def test_the_reference_profile_is_covered_by_the_manifest(drift_bundle, tmp_path):
    assert REFERENCE_FILE in (drift_bundle / MANIFEST_FILE).read_text()
    bundle = load_bundle(drift_bundle)
    assert set(bundle.reference["features"]) == set(drift.KEY_FEATURES)
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(drift_bundle, copy)
    profile = json.loads((copy / REFERENCE_FILE).read_text())
    profile["features"]["length"]["shares"][0] += 0.1
    (copy / REFERENCE_FILE).write_text(json.dumps(profile))
    with pytest.raises(BundleError, match="reference.json has sha256"):
        load_bundle(copy)


def test_a_reference_file_the_manifest_does_not_list_is_refused(bundle_dir, tmp_path):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)  # a bundle written without a profile
    assert load_bundle(copy).reference is None
    (copy / REFERENCE_FILE).write_text("{}")
    with pytest.raises(BundleError, match="not listed"):
        load_bundle(copy)


# ---------------------------------------------------------------- the CLI


def test_drift_cli_flags_the_shifted_sample_only(drift_bundle, samples, tmp_path, capsys):
    codes = {}
    for name, path in samples.items():
        codes[name] = drift_cli.main([
            str(path), "--model", str(drift_bundle), "--out", str(tmp_path / f"{name}.json"),
            "--figure", str(tmp_path / f"{name}.png"), "--fail-on-drift",
        ])  # fmt: skip
    assert codes == {"unshifted": 0, "shifted": drift_cli.EXIT_DRIFT}
    shifted = json.loads((tmp_path / "shifted.json").read_text())
    unshifted = json.loads((tmp_path / "unshifted.json").read_text())
    assert shifted["drift"] is True and unshifted["drift"] is False
    assert shifted["batch"]["rows"] == unshifted["n_beats"] + unshifted["batch"]["skipped_rows"]
    assert set(shifted["features"]) == set(drift.KEY_FEATURES) and "psi" in shifted["class_mix"]
    assert (tmp_path / "shifted.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # without the flag a drifting batch still exits 0: the report is the product
    assert (
        drift_cli.main([str(samples["shifted"]), "--model", str(drift_bundle), "--out", str(tmp_path / "r.json")]) == 0
    )


def test_drift_cli_needs_a_bundle_with_a_profile(bundle_dir, samples, tmp_path, capsys):
    code = drift_cli.main([str(samples["unshifted"]), "--model", str(bundle_dir), "--out", str(tmp_path / "r.json")])
    assert code == drift_cli.EXIT_ERROR
    assert "no reference profile" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


# ---------------------------------------------------------------- the service


def _metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):  # name with its labels, e.g. 'x{feature="length"}'
            return float(line.rsplit(" ", 1)[1])
    return None


def _post(client: TestClient, frame: pd.DataFrame) -> None:
    for start in range(0, len(frame), 50):
        beats = [
            {"samples": row[SAMPLE_COLUMNS].astype(float).tolist(), "length": int(row["length"])}
            | {c: float(row[c]) for c in ("rr_prev", "rr_next", "rr_local") if 0 < row[c] <= 10}
            for _, row in frame.iloc[start : start + 50].iterrows()
        ]
        response = client.post("/v1/beats:classify", json={"beats": beats})
        assert response.status_code == 200, response.text


def test_service_exports_drift_gauges_over_a_sliding_window(drift_bundle, fixture_split, samples):
    _, val = fixture_split
    val = val.sample(frac=1.0, random_state=0).reset_index(drop=True)  # val is sorted by record
    window = 200
    settings = Settings(auth="off", model_dir=drift_bundle, drift_window=window, drift_min_beats=100)
    with TestClient(create_app(settings)) as client:
        text = client.get("/metrics").text
        assert _metric(text, "ecgbeats_drift_window_beats") == 0
        assert "ecgbeats_drift_psi" not in text  # not before the window holds min_beats beats
        _post(client, val.iloc[:window])
        text = client.get("/metrics").text
        assert _metric(text, "ecgbeats_drift_window_beats") == window
        for feature in drift.KEY_FEATURES:
            assert f'ecgbeats_drift_psi{{feature="{feature}"}}' in text
            assert f'ecgbeats_drift_ks{{feature="{feature}"}}' in text
        assert _metric(text, "ecgbeats_drift_class_mix_psi") is not None
        assert 'ecgbeats_drift_predicted_share{class_name="N"}' in text
        calm = _metric(text, 'ecgbeats_drift_psi{feature="unpadded_mean"}')
        # the window slides: after as many shifted beats, only shifted beats are in it
        _post(client, pd.read_parquet(samples["shifted"]).iloc[:window])
        text = client.get("/metrics").text
        assert _metric(text, "ecgbeats_drift_window_beats") == window
        shifted = _metric(text, 'ecgbeats_drift_psi{feature="unpadded_mean"}')
        assert calm < drift.PSI_MODERATE < drift.PSI_MAJOR < shifted
        model = client.get("/v1/model").json()
        assert model["drift"]["window"] == window and set(model["drift"]["features"]) == set(drift.KEY_FEATURES)


def test_service_without_a_profile_serves_without_drift_gauges(bundle_dir):
    with TestClient(create_app(Settings(auth="off", model_dir=bundle_dir))) as client:
        assert "ecgbeats_drift" not in client.get("/metrics").text
        assert client.get("/v1/model").json()["drift"] is None


def test_a_pinned_digest_that_does_not_match_stops_the_start(drift_bundle):
    app = create_app(Settings(auth="off", model_dir=drift_bundle, model_digest="0" * 64))
    with pytest.raises(BundleError, match="pinned"), TestClient(app):
        pass


def test_scoring_is_idempotent_and_names_the_model(drift_bundle, fixture_split):
    """What makes a client retry after a restart safe: the same request gives the same answer, and
    every answer names the model version and digest that produced it (no server-side state is used)."""
    _, val = fixture_split
    rows = val.sample(20, random_state=1)
    beats = [
        {"samples": row[SAMPLE_COLUMNS].astype(float).tolist(), "length": int(row["length"])}
        for _, row in rows.iterrows()
    ]
    settings = Settings(auth="off", model_dir=drift_bundle, drift_window=50, drift_min_beats=10)
    with TestClient(create_app(settings)) as first:
        one = first.post("/v1/beats:classify", json={"beats": beats}).json()
        for _ in range(3):  # the drift window and counters change; the answers do not
            again = first.post("/v1/beats:classify", json={"beats": beats}).json()
            assert again == one
    with TestClient(create_app(settings)) as restarted:
        assert restarted.post("/v1/beats:classify", json={"beats": beats}).json() == one
    assert one["model"]["digest"] and len(one["predictions"]) == len(beats)


def test_a_record_model_is_monitored_on_its_reference_measures():
    """A record bundle's profile holds its measures against the patient's sinus reference; the monitor
    reads them from the model's feature table, and a shifted prematurity shows as drift there."""
    from ecgbeats.serving.monitoring import DriftMonitor

    rng = np.random.default_rng(0)
    n = 3000
    table = pd.DataFrame(
        {"rr_prev": rng.normal(0.8, 0.05, n), "rr_prev_ref": rng.normal(1.0, 0.03, n),
         "ref_qrs_corr": rng.uniform(0.95, 1.0, n), "ref_ptp_ratio": rng.normal(1.0, 0.05, n),
         "p_wave": rng.normal(0.1, 0.02, n), "ctx_irregularity": rng.uniform(0.0, 0.05, n),
         "a_tpl_corr": rng.uniform(0.9, 1.0, n)}
    )  # fmt: skip
    profile = drift.build_profile(table, np.zeros(n, dtype=np.int64), ["N", "S", "V", "F", "Q"])
    assert set(profile["features"]) == set(drift.RECORD_KEY_FEATURES)
    monitor = DriftMonitor(profile, window=1000, min_beats=500)
    monitor(table.iloc[:1000], np.tile([1.0, 0, 0, 0, 0], (1000, 1)))
    assert monitor.scores().psi["rr_prev_ref"] < 0.1
    early = table.iloc[:1000].assign(rr_prev_ref=lambda t: t["rr_prev_ref"] * 0.6)  # every beat premature
    monitor(early, np.tile([0, 1.0, 0, 0, 0], (1000, 1)))
    scores = monitor.scores()
    assert scores.psi["rr_prev_ref"] > drift.PSI_MAJOR and scores.psi["ref_qrs_corr"] < 0.1
    assert drift.compare(profile, early, np.ones(1000, dtype=np.int64))["drift"]
