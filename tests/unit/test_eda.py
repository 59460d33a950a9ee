from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from ecgbeats.analysis import eda, eda_report
from ecgbeats.data.aami import DS1, DS2
from ecgbeats.data.beats import BEAT_SAMPLES
from ecgbeats.data.dataset import SAMPLE_COLUMNS
from ecgbeats.data.splits import kaggle_split
from studies import eda as stage
from tests.conftest import ROOT

EDA_PARAMS = {
    "seed": 0,
    "examples_per_class": 3,
    "pca_per_class": 100,
    "neighbour_per_class": 30,
    "auc_max_reference": 500,
    "min_record_beats": 5,
    "concentration_share": 0.8,
    "augment_max_ratio": 10,
    "augment_min_beats": 5,
    "premature_ratio": 0.85,
    "flat_std": 0.05,
    "clip_run": 4,
    "outlier_z": 5.0,
}


def test_class_summary_counts_shares_imbalance_and_absent_classes():
    summary = eda.class_summary(np.array([0] * 8 + [1] * 2 + [2] * 4), np.array(["a"] * 10 + ["b"] * 4))
    assert summary["counts"] == {"N": 8, "S": 2, "V": 4, "F": 0, "Q": 0}
    assert summary["shares"]["N"] == pytest.approx(8 / 14)
    assert summary["imbalance_ratio"] == 4.0  # largest 8 over smallest non-empty 2
    assert summary["absent"] == ["F", "Q"]
    assert summary["records"] == 2


def test_class_concentration_finds_the_holders_of_a_class():
    records = np.array(["r1"] * 6 + ["r2"] * 3 + ["r3"] * 1 + ["r1"] * 10)
    labels = np.array([1] * 6 + [1] * 3 + [1] * 1 + [0] * 10)
    table = eda.class_concentration(eda.record_composition(records, labels), share=0.8)
    s = table.loc["S"]
    assert (s["beats"], s["records"], s["top_record"]) == (10, 3, "r1")
    assert s["top_share"] == pytest.approx(0.6)
    assert s["records_for_share"] == 2  # 6 + 3 of 10 beats reach 80 %
    assert table.loc["F", "beats"] == 0 and pd.isna(table.loc["F", "top_record"])


def test_record_overlap_measures_patients_shared_by_train_and_test():
    overlap = eda.record_overlap(
        np.array(["a", "a", "b"]), np.array([0, 1, 0]), np.array(["a", "b", "c", "b"]), np.array([1, 0, 0, 1])
    )
    assert overlap["same_record"] == pytest.approx(3 / 4)  # a, b, b have training beats; c not
    assert overlap["same_record_and_class"] == pytest.approx(2 / 4)  # (a, S) and (b, N)


def test_growth_factors_target_the_ratio_and_refuse_tiny_classes():
    plan = eda.growth_factors({"N": 1000, "S": 40, "V": 100, "F": 0, "Q": 3}, max_ratio=10, min_beats=5)
    assert plan == {"N": 1.0, "S": 2.5, "V": 1.0, "F": None, "Q": None}


def test_padding_by_position_and_share():
    lengths = np.array([2, 4, 300])
    labels = np.array([0, 0, 1])
    padding = eda.padding_by_position(lengths, labels)
    assert padding["N"].iloc[:2].tolist() == [0.0, 0.0]
    assert padding["N"].iloc[2] == 0.5 and padding["N"].iloc[4] == 1.0
    assert (padding["S"] == 0).all()  # longer than the row: never padded
    assert padding["V"].isna().all()
    np.testing.assert_allclose(eda.padding_share(lengths), [185 / 187, 183 / 187, 0.0])
    assert padding["time_ms"].iloc[3] == pytest.approx(25.0)  # 120 Hz: 8.33 ms per sample


def test_auc_columns_matches_sklearn_and_handles_direction_and_ties():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(300, 3))
    values[:, 2] = np.round(values[:, 2])  # ties
    positive = rng.random(300) < 0.3
    values[positive, 0] += 1
    expected = [roc_auc_score(positive, values[:, j]) for j in range(3)]
    np.testing.assert_allclose(eda.auc_columns(values, positive), expected)
    assert eda.auc_columns(np.array([1.0, 2, 3, 4]), np.array([0, 0, 1, 1]))[0] == 1.0
    assert eda.auc_columns(np.array([1.0, 2, 3, 4]), np.array([1, 1, 0, 0]))[0] == 0.0
    assert np.isnan(eda.auc_columns(np.array([1.0, 2]), np.array([0, 0]))[0])


def test_rhythm_summary_counts_premature_beats():
    frame = pd.DataFrame(
        {"rr_prev": [1.0, 0.5, 0.6, np.nan], "rr_next": [1.0, 1.5, 1.0, 1.0], "rr_local": [1.0, 1.0, 1.0, 1.0],
         "length": [144, 180, 120, 120]}
    )  # fmt: skip
    rhythm = eda.rhythm_frame(frame)
    assert rhythm["length_ms"].iloc[0] == pytest.approx(1200.0)
    table = eda.rhythm_summary(rhythm, np.array([0, 1, 1, 0]), premature_ratio=0.85)
    assert table.loc["S", "premature"] == 1.0 and table.loc["N", "premature"] == 0.0  # the NaN is not counted
    assert table.loc["S", "prev_local"] == pytest.approx(0.55)


def test_longest_run():
    mask = np.array([[1, 1, 0, 1, 1, 1], [0, 0, 0, 0, 0, 0], [1, 0, 1, 0, 1, 0]], dtype=bool)
    assert eda.longest_run(mask).tolist() == [3, 0, 1]


def beat(kind: str, rng: np.random.Generator) -> np.ndarray:
    t = np.linspace(0, 1, 100)
    row = np.zeros(BEAT_SAMPLES, dtype=np.float32)
    shape = np.exp(-((t - 0.3) ** 2) / 0.002) + 0.2 * np.sin(6 * t) + 0.01 * rng.normal(size=100)
    if kind == "far":
        shape = 1 - shape
    shape = (shape - shape.min()) / (shape.max() - shape.min())
    if kind == "clipped":
        shape[28:36] = 1.0
    if kind == "flat":
        shape = 0.5 + 0.01 * rng.normal(size=100)
    row[:100] = shape
    return row


def test_suspicious_beats_flags_flat_clipped_and_far_beats():
    rng = np.random.default_rng(1)
    kinds = ["normal"] * 60 + ["flat", "clipped", "far"]
    samples = np.stack([beat(k, rng) for k in kinds])
    flags = eda.suspicious_beats(
        samples, np.full(len(kinds), 100), np.zeros(len(kinds), dtype=int), flat_std=0.05, clip_run=4, outlier_z=5
    )
    assert flags["flat"].tolist() == [k == "flat" for k in kinds]
    assert flags["clipped"].tolist() == [k == "clipped" for k in kinds]
    assert flags["far"].iloc[-1] and not flags["far"].iloc[:60].any()
    assert flags["plateau"].iloc[61] == 8


def test_patient_variability_on_two_patients_with_distinct_shapes():
    rng = np.random.default_rng(2)
    a = np.zeros(BEAT_SAMPLES)
    b = np.zeros(BEAT_SAMPLES)
    a[:10], b[10:20] = 1.0, 1.0
    noise = 0.05 * rng.normal(size=(40, BEAT_SAMPLES))
    samples = np.vstack([a + noise[:20], b + noise[20:]])
    records = np.array(["ra"] * 20 + ["rb"] * 20)
    summary, per_beat = eda.patient_variability(samples, records, np.zeros(40, dtype=int), min_beats=5)
    n = summary.loc["N"]
    assert n["records"] == 2 and n["nearest_is_own"] == 1.0 and n["chance"] == 0.5
    assert n["ratio"] > 2 and n["between_share"] > 0.5
    # the own distance leaves the beat out of its record's mean
    loo_mean = samples[1:20].mean(axis=0)
    assert per_beat["own"].iloc[0] == pytest.approx(np.linalg.norm(samples[0] - loo_mean))
    assert per_beat["other"].iloc[0] == pytest.approx(np.linalg.norm(samples[0] - samples[20:].mean(axis=0)))


def test_nearest_neighbours_and_the_neighbour_check():
    rng = np.random.default_rng(3)
    train = rng.normal(size=(200, 8))
    queries = rng.normal(size=(30, 8))
    brute = np.argmin(((queries[:, None, :] - train[None, :, :]) ** 2).sum(axis=2), axis=1)
    np.testing.assert_array_equal(eda.nearest_neighbours(train, queries, chunk=7), brute)

    y = np.repeat([0, 1], 100)
    check = eda.neighbour_check(
        train, y, np.array(["p"] * 200), train[:200:5], y[::5], np.array(["p"] * 40), per_class=10, seed=0
    )
    assert check["queries"] == 20 and check["same_record"] == 1.0
    assert check["balanced_accuracy"] == 1.0  # each query is its own nearest training beat


def test_covariance_structure_and_components():
    rng = np.random.default_rng(4)
    base = rng.normal(size=(500, 1))
    samples = np.hstack([base, base + 0.01 * rng.normal(size=(500, 1)), 0.1 * rng.normal(size=(500, 1))])
    structure = eda.covariance_structure(samples.astype(np.float32))
    assert structure["explained"][0] > 0.99
    assert eda.components_for(structure["explained"], 0.95) == 1
    assert structure["corr"][0, 1] == pytest.approx(1.0, abs=1e-3)
    assert eda.lag_correlation(structure["corr"])[0] == pytest.approx(1.0)


def write_fixture_splits(beats: pd.DataFrame, directory) -> None:
    """Both protocols' sets from the fixture beats: kaggle as the split stage makes it, interpatient
    by hand (the excerpts hold three DS1 and two DS2 records)."""
    sets = kaggle_split(beats["label"].to_numpy(), test_size=0.2, val_size=0.1, seed=0)
    (directory / "kaggle").mkdir(parents=True)
    for name in ("train", "val", "test"):
        beats[sets == name].to_parquet(directory / "kaggle" / f"{name}.parquet", index=False)
    ds1 = beats[beats["record"].isin(DS1)]
    rng = np.random.default_rng(0)
    test = rng.random(len(ds1)) < 0.2
    val = (ds1["record"] == "124").to_numpy()
    inter = {
        "train": ds1[~val & ~test],
        "val": ds1[val],
        "test": ds1[~val & test],
        "holdout": beats[beats["record"].isin(DS2)],
    }
    (directory / "interpatient").mkdir()
    for name, part in inter.items():
        part.to_parquet(directory / "interpatient" / f"{name}.parquet", index=False)


@pytest.fixture(scope="module")
def stage_run(fixture_beats, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eda")
    fixture_beats.to_parquet(tmp / "beats.parquet", index=False)
    write_fixture_splits(fixture_beats, tmp / "processed")
    (tmp / "params.yaml").write_text(yaml.safe_dump({"eda": EDA_PARAMS}))
    argv = [
        "--beats", str(tmp / "beats.parquet"), "--splits", str(tmp / "processed"),
        "--template", str(ROOT / "reports" / "templates" / "eda.md"), "--report", str(tmp / "reports" / "eda.md"),
        "--plots", str(tmp / "plots" / "eda"), "--metrics", str(tmp / "metrics" / "eda.json"),
        "--params", str(tmp / "params.yaml"),
    ]  # fmt: skip
    assert stage.main(argv) == 0
    return tmp


def test_stage_writes_every_figure_and_plot_file(stage_run):
    plots = stage_run / "plots" / "eda"
    assert sorted(p.name for p in plots.iterdir()) == sorted([*eda_report.FIGURES, *eda_report.PLOT_DATA])
    for name in eda_report.FIGURES:
        assert (plots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    mean_beat = pd.read_csv(plots / "class_mean_beat.csv")
    assert len(mean_beat) == BEAT_SAMPLES and {"time_ms", "N", "S", "V", "F", "Q"} <= set(mean_beat.columns)
    assert mean_beat["time_ms"].iloc[1] == pytest.approx(1000 / 120, rel=1e-4)


def test_stage_report_has_no_placeholder_and_embeds_every_figure(stage_run, fixture_beats):
    report = (stage_run / "reports" / "eda.md").read_text()
    assert not re.search(r"\$[A-Za-z_{]", report)
    for name in eda_report.FIGURES:
        assert f"](../plots/eda/{name})" in report
    assert f"{len(fixture_beats):,} beats" in report
    conclusions = report.split("## Conclusions")[1]
    assert re.search(r"^1\. \*\*", conclusions, re.M) and re.search(r"^7\. \*\*", conclusions, re.M)
    assert not re.search(r"\bnan\b", report)  # a value the data could not give shows as "–", never as nan


def test_stage_metrics_agree_with_the_data(stage_run, fixture_beats):
    metrics = json.loads((stage_run / "metrics" / "eda.json").read_text())
    counts = fixture_beats["label"].value_counts()
    assert metrics["classes"]["all beats"]["counts"]["N"] == int(counts[0])
    assert metrics["beats"] == len(fixture_beats)
    assert metrics["kaggle_test_overlap"]["same_record"] == 1.0  # a random beat split shares every patient
    assert metrics["holdout_overlap"]["same_record"] == 0.0
    assert metrics["cut_beats"] == int((fixture_beats["length"] > BEAT_SAMPLES).sum())
    samples = fixture_beats[SAMPLE_COLUMNS].to_numpy()
    assert metrics["padding_share"]["all"] == pytest.approx(
        float(np.clip(BEAT_SAMPLES - fixture_beats["length"], 0, None).mean() / BEAT_SAMPLES)
    )
    assert samples.shape[1] == BEAT_SAMPLES


def test_stage_refuses_beats_without_records(fixture_beats, tmp_path):
    beats = fixture_beats.head(50).copy()
    beats["record"] = pd.array([None] * len(beats), dtype="string")
    beats.to_parquet(tmp_path / "beats.parquet", index=False)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"eda": EDA_PARAMS}))
    argv = ["--beats", str(tmp_path / "beats.parquet"), "--splits", str(tmp_path), "--template", "x", "--report",
            str(tmp_path / "r.md"), "--plots", str(tmp_path / "p"), "--metrics", str(tmp_path / "m.json"),
            "--params", str(tmp_path / "params.yaml")]  # fmt: skip
    assert stage.main(argv) == 1
    assert not (tmp_path / "r.md").exists()
