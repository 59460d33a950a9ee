"""The real ``dvc repro`` on the fixture excerpts, in a temporary copy of the repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import FIXTURE_MIRROR, ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# the fixture excerpts are small: fractions instead of the published counts, one validation record
FIXTURE_PARAMS = {
    ("split", "kaggle", "test_size"): 0.2,
    ("split", "interpatient", "val_records"): 1,
    ("split", "interpatient", "min_class_beats"): 1,
    ("train", "num_threads"): 1,  # a few hundred beats: threads only add synchronisation
    ("train", "num_boost_round"): 300,
    ("train", "early_stopping_rounds"): 20,
    ("learning_curve", "fractions"): [0.5, 1.0],
    ("impute", "knn_reference_beats"): 500,
    ("features", "tsfresh", "subsample"): 400,
    ("shift", "subsample"): {"test": 200, "holdout": 300},
    ("shift", "bootstrap"): 20,
    ("shift", "min_template_beats"): 5,
    ("shift", "mitigations"): {"baseline": {}, "record_relative": {"record_relative": {"window": 20}}},
    ("record", "cv", "folds"): 3,  # three DS1 records
    ("record", "figure", "records"): ["232:60", "213:60"],  # the excerpts are 3 minutes long
}


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory, fixture_manifest_sha256) -> tuple[Path, dict[str, str]]:
    """The working tree (tracked and new files) copied into a fresh git repo, set up for fixtures."""
    dest = tmp_path_factory.mktemp("repo")
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    for generated in ("dvc.lock", "metrics"):
        path = dest / generated
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["download"]["sha256sums"] = fixture_manifest_sha256
    for keys, value in FIXTURE_PARAMS.items():
        node = params
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {
        **os.environ,
        "MITDB_MIRROR": str(FIXTURE_MIRROR),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    run(["git", "init", "-q"], dest, env)
    run(["git", "add", "-A"], dest, env)
    run([*git, "commit", "-qm", "fixture run"], dest, env)
    return dest, env


DVC = [sys.executable, "-m", "dvc"]
PRODUCT = ["download", "ingest", "split@kaggle", "split@interpatient", "impute@kaggle", "impute@interpatient",
           "augment@kaggle", "augment@interpatient", "features@kaggle", "train@kaggle", "train@interpatient",
           "evaluate@kaggle-test", "evaluate@interpatient-test", "evaluate@interpatient-holdout", "shift",
           "record_beats", "crossval@record", "crossval@record-reference", "train_record@record",
           "train_record@record-reference", "evaluate@record-holdout", "evaluate@record-reference-holdout",
           "ec57@record", "ec57@record-reference", "refit_record@record", "refit_record@record-reference",
           "detection"]  # fmt: skip
RECORD_CHAIN = ["crossval@record", "ec57@record", "evaluate@record-holdout", "refit_record@record",
                "train_record@record"]  # fmt: skip
REFERENCE_CHAIN = ["crossval@record-reference", "ec57@record-reference", "evaluate@record-reference-holdout",
                   "refit_record@record-reference", "train_record@record-reference"]  # fmt: skip


def tracked_outputs(repo: Path) -> dict[str, bytes]:
    """dvc.lock and every metric, plot and report file: what git tracks of a run."""
    names = ["dvc.lock", "studies/dvc.lock"]
    for folder in ("metrics", "plots", "reports"):
        names += [str(p.relative_to(repo)) for p in sorted((repo / folder).rglob("*")) if p.is_file()]
    return {name: (repo / name).read_bytes() for name in names if (repo / name).is_file()}


def set_param(repo: Path, keys: tuple[str, ...], value: object) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    node = params
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def stale_stages(repo: Path, env: dict[str, str], pipeline: str = "dvc.yaml") -> list[str]:
    out = run([*DVC, "repro", "--dry", pipeline], repo, env).stdout
    names = [line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")]
    return [name.rpartition(":")[2] for name in names]  # studies/dvc.yaml:eda -> eda


@pytest.fixture(scope="module")
def reproduced(repo_copy):
    """The product pipeline (`dvc repro`), then the studies (`dvc repro studies/dvc.yaml`)."""
    repo, env = repo_copy
    product = run([*DVC, "repro"], repo, env)
    ran = [line.split("'")[1] for line in product.stdout.splitlines() if line.startswith("Running stage")]
    assert sorted(ran) == sorted(PRODUCT), "dvc repro runs the product and nothing else"
    run([*DVC, "repro", "studies/dvc.yaml"], repo, env)
    return repo, env, product


def test_repro_builds_beats_and_both_protocols(reproduced):
    repo, _, _ = reproduced
    data = json.loads((repo / "metrics" / "data.json").read_text())
    assert data["records"] == 6
    assert all(count > 0 for count in data["classes"].values())
    assert data["fidelity"]["rows"] == 520
    for protocol, sets in (("kaggle", {"train", "val", "test"}), ("interpatient", {"train", "val", "test", "holdout"})):
        split = json.loads((repo / "metrics" / protocol / "split.json").read_text())
        assert set(split["sets"]) == sets
        assert sum(s["beats"] for s in split["sets"].values()) + split["excluded_beats"] == data["beats"]
        assert {p.name for p in (repo / "data" / "processed" / protocol).iterdir()} == {f"{s}.parquet" for s in sets}


def test_repro_trains_and_evaluates_both_protocols(reproduced):
    from ecgbeats.modelling.bundle import load_bundle

    repo, _, _ = reproduced
    for protocol, sets in (("kaggle", ["test"]), ("interpatient", ["test", "holdout"])):
        train = json.loads((repo / "metrics" / protocol / "train.json").read_text())
        assert train["best_iteration"] >= 1 and not any("seconds" in key for key in train)
        bundle = load_bundle(repo / "models" / protocol)
        assert bundle.meta["protocol"] == protocol and bundle.preprocessing.local_rr_beats == 10
        assert ("tsfresh" in bundle.meta["features"]["groups"]) == (protocol == "kaggle")
        for name in sets:
            report = json.loads((repo / "metrics" / protocol / f"{name}.json").read_text())
            assert {"accuracy", "macro_f1", "per_class", "ci95"} <= set(report)
            assert set(report["per_class"]["N"]) >= {"precision", "recall", "f1", "support"}
            for figure in ("confusion.png", "roc_pr.png", "reliability.png", "errors.png", "confusion.csv"):
                assert (repo / "plots" / protocol / name / figure).is_file()
        for curve in ("multi_logloss", "macro_f1"):
            assert (
                repo / "plots" / protocol / "train" / "live" / "plots" / "metrics" / "val" / f"{curve}.tsv"
            ).is_file()


def test_repro_runs_the_processing_stages_for_both_protocols(reproduced):

    repo, _, _ = reproduced
    for protocol in ("kaggle", "interpatient"):
        interim = repo / "data" / "interim" / protocol
        splits = sorted(p.name for p in (repo / "data" / "processed" / protocol).glob("*.parquet"))
        for step in ("imputed", "augmented"):
            assert sorted(p.name for p in (interim / step).glob("*.parquet")) == splits
        assert json.loads((repo / "metrics" / "processing" / f"impute_{protocol}.json").read_text())["method"]
    # tsfresh for the model that uses it (kaggle); the interpatient extraction is a study's
    assert not (repo / "data" / "interim" / "interpatient" / "features").exists()
    for features in (
        repo / "data" / "interim" / "kaggle" / "features",
        repo / "data" / "studies" / "interpatient" / "features",
    ):
        assert (features / "tsfresh_settings.json").is_file() and (features / "relevance.csv").is_file()


def test_studies_run_on_demand_with_their_reports(reproduced):
    repo, _, _ = reproduced
    for protocol in ("kaggle", "interpatient"):
        study = json.loads((repo / "metrics" / "processing" / f"impute_gaps_{protocol}.json").read_text())
        assert {row["method"] for row in study["levels"]} == {"none", "zero", "linear", "pchip", "knn"}
        baselines = json.loads((repo / "metrics" / protocol / "baselines.json").read_text())
        assert set(baselines) == {"majority_class", "logistic_regression", "lightgbm_raw_samples"}
    for name in ("features_ablation", "tsfresh_ablation", "imbalance_kaggle", "imbalance_interpatient"):
        assert json.loads((repo / "metrics" / "processing" / f"{name}.json").read_text())["set"] == "validation"
    mitigations = json.loads((repo / "metrics" / "shift_mitigations.json").read_text())
    assert set(mitigations["variants"]) == {"baseline", "record_relative"}
    for report in ("processing", "modelling", "eda", "shift_mitigations"):
        text = (repo / "reports" / f"{report}.md").read_text()
        assert "## " in text and "$" not in text, report  # every $placeholder filled


def test_repro_runs_the_shift_stage(reproduced):
    repo, _, _ = reproduced
    shift = json.loads((repo / "metrics" / "shift.json").read_text())
    assert {"patient_shift", "synthetic", "label_shift", "drift"} <= set(shift)
    assert "mitigations" not in shift and "seconds" not in shift
    for kind, rows in shift["synthetic"].items():
        assert rows[0]["severity"] == 0 and len(rows) > 1, kind
    assert "$" not in (repo / "reports" / "shift.md").read_text()


def test_plots_render(reproduced):
    repo, env, _ = reproduced
    result = run([*DVC, "plots", "show", "--json"], repo, env)
    assert "errors" not in json.loads(result.stdout) or not json.loads(result.stdout)["errors"]


def test_split_sets_are_disjoint_and_patients_do_not_cross(reproduced):
    import pandas as pd

    repo, _, _ = reproduced
    folder = repo / "data" / "processed" / "interpatient"
    parts = {p.stem: pd.read_parquet(p, columns=["record", "r_peak"]) for p in folder.glob("*.parquet")}
    keys = {name: set(zip(frame["record"], frame["r_peak"], strict=True)) for name, frame in parts.items()}
    names = sorted(keys)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert keys[a].isdisjoint(keys[b]), f"{a} and {b} share beats"
    ds1 = set(parts["train"]["record"]) | set(parts["val"]["record"]) | set(parts["test"]["record"])
    assert ds1.isdisjoint(set(parts["holdout"]["record"]))
    assert set(parts["val"]["record"]).isdisjoint(set(parts["train"]["record"]))


def test_second_repro_does_nothing_and_metrics_show_counts(reproduced):
    repo, env, _ = reproduced
    again = run([*DVC, "repro"], repo, env)
    assert "Running stage" not in again.stdout
    assert stale_stages(repo, env, "studies/dvc.yaml") == []
    shown = run([*DVC, "metrics", "show"], repo, env).stdout
    assert "metrics/data.json" in shown and "classes.N" in shown


# what a rerun could change: the models and everything written from them, and the studies that write
# figures and reports (the data stages write plain JSON counts; the other studies JSON as these do)
RERUN = ["train@kaggle", "train@interpatient", "evaluate@kaggle-test", "evaluate@interpatient-test",
         "evaluate@interpatient-holdout", "shift", *RECORD_CHAIN, *REFERENCE_CHAIN, "studies/dvc.yaml:eda",
         "studies/dvc.yaml:shift_mitigations", "studies/dvc.yaml:report_processing",
         "studies/dvc.yaml:report_modelling", "studies/dvc.yaml:record_cv@record",
         "studies/dvc.yaml:record_cv@record-reference", "studies/dvc.yaml:reference_figure"]  # fmt: skip


def test_a_forced_rerun_gives_byte_identical_outputs(reproduced):
    repo, env, _ = reproduced
    before = tracked_outputs(repo)
    run([*DVC, "repro", "--force", "--single-item", *RERUN], repo, env)
    after = tracked_outputs(repo)
    assert sorted(after) == sorted(before)
    changed = [name for name in before if before[name] != after[name]]
    assert not changed, f"a rerun of the same code and params changed {changed}"


def test_a_study_param_reruns_no_product_stage(reproduced):
    repo, env, _ = reproduced
    original = (repo / "params.yaml").read_text()
    try:
        set_param(repo, ("eda", "examples_per_class"), 3)
        assert stale_stages(repo, env) == []
        assert stale_stages(repo, env, "studies/dvc.yaml") == ["eda"]
    finally:
        (repo / "params.yaml").write_text(original)


def test_a_record_model_choice_reruns_only_the_record_chain(reproduced):
    """A decision of the record model (here: one lead) is a cross-validation and the fits after it; the
    beats measured on the records are not measured again."""
    repo, env, _ = reproduced
    original = (repo / "params.yaml").read_text()
    try:
        cv = json.loads((repo / "metrics" / "record" / "cv.json").read_text())
        set_param(repo, ("record", "model", "leads"), 2)
        assert sorted(stale_stages(repo, env)) == ["crossval@record", "refit_record@record", "train_record@record"]
        ran = run([*DVC, "repro"], repo, env).stdout
        assert (
            sorted(line.split("'")[1] for line in ran.splitlines() if line.startswith("Running stage")) == RECORD_CHAIN
        )
        two_leads = json.loads((repo / "metrics" / "record" / "cv.json").read_text())
        measured = json.loads((repo / "metrics" / "record" / "beats.json").read_text())["features"]
        assert cv["features"] < two_leads["features"] < measured  # the reference groups are measured, not used
    finally:
        (repo / "params.yaml").write_text(original)
        run([*DVC, "repro"], repo, env)  # back to the committed choice for the tests after this one


def test_a_training_param_reruns_only_training_evaluation_and_shift(reproduced):
    """What a sweep of a training parameter costs: the two trainings, three evaluations and the shift."""
    repo, env, _ = reproduced
    original = (repo / "params.yaml").read_text()
    try:
        set_param(repo, ("train", "num_leaves"), 15)
        assert sorted(stale_stages(repo, env)) == [
            "crossval@record", "crossval@record-reference", "refit_record@record", "refit_record@record-reference",
            "train@interpatient", "train@kaggle", "train_record@record", "train_record@record-reference",
        ]  # fmt: skip
        ran = run([*DVC, "repro"], repo, env).stdout
        ran = sorted(line.split("'")[1] for line in ran.splitlines() if line.startswith("Running stage"))
        expected = ["evaluate@interpatient-holdout", "evaluate@interpatient-test", "evaluate@kaggle-test", "shift",
                    "train@interpatient", "train@kaggle", *RECORD_CHAIN, *REFERENCE_CHAIN]  # fmt: skip
        assert ran == sorted(expected)
    finally:
        (repo / "params.yaml").write_text(original)


def test_record_model_cross_validated_scored_end_to_end_and_refitted(reproduced):
    from ecgbeats.modelling.bundle import load_bundle

    repo, _, _ = reproduced
    beats = json.loads((repo / "metrics" / "record" / "beats.json").read_text())
    assert beats["ds1"]["records"] == 3 and beats["ds2"]["records"] == 2
    cv = json.loads((repo / "metrics" / "record" / "cv.json").read_text())
    folds = [set(records) for records in cv["folds"].values()]
    assert len(folds) == 3 and set().union(*folds) == {"124", "201", "208"}
    assert sum(len(f) for f in folds) == 3, "a record is in two folds"
    assert cv["spread"]["best_iteration"]["median"] >= 1
    ec57 = json.loads((repo / "metrics" / "record" / "ec57.json").read_text())
    assert set(ec57["per_record"]) == {"213", "232"}
    assert ec57["gross"]["qrs_Se"] > 0.9 and ec57["gross"]["qrs_+P"] > 0.9
    assert ec57["gross"]["matched"] == sum(r["matched"] for r in ec57["per_record"].values())
    holdout = json.loads((repo / "metrics" / "record" / "holdout.json").read_text())
    assert holdout["beats"] == beats["ds2"]["beats"]
    ds1_only, served = load_bundle(repo / "models" / "record-ds1"), load_bundle(repo / "models" / "record")
    assert ds1_only.representation == served.representation == "record"
    assert ds1_only.meta["training_records"] == ["124", "201", "208"]
    assert served.meta["training_records"] == ["124", "201", "208", "213", "232"]
    expected = served.meta["expected_on_new_patients"]
    assert expected["holdout"]["accuracy"] == holdout["accuracy"]
    assert expected["ec57"]["accuracy"] == ec57["gross"]["accuracy"]
    assert served.meta["patient_context"]["history_seconds"] == 300.0
    variants = json.loads((repo / "metrics" / "record" / "cv_variants.json").read_text())["variants"]
    assert {"chosen", "+ second lead", "Kaggle beat rows"} <= set(variants)
    assert "| chosen |" in (repo / "reports" / "record_cv.md").read_text()


def test_reference_model_carries_its_rules_drift_reference_and_figure(reproduced):
    """The second record model: on the sinus reference, its rhythm rules chosen on the folds and stated
    in both bundles, a drift reference of its measures, and the report's figure of it."""
    from ecgbeats.modelling.bundle import load_bundle
    from ecgbeats.operations.drift import RECORD_KEY_FEATURES

    repo, _, _ = reproduced
    cv = json.loads((repo / "metrics" / "record-reference" / "cv.json").read_text())
    assert set(cv["rhythm_rules"]) == {"premature", "p_corr", "qrs_corr", "fibrillation"}
    assert cv["pooled"]["macro_f1_nsvf"] >= cv["model_only"]["macro_f1_nsvf"]  # the rules off are a candidate
    assert set(cv["per_record"]) == {"124", "201", "208"}
    for name in ("record-reference-ds1", "record-reference"):
        bundle = load_bundle(repo / "models" / name)
        assert "reference" in bundle.record_config.groups
        assert bundle.meta["rhythm_rules"] == cv["rhythm_rules"]
        assert set(bundle.reference["features"]) == set(RECORD_KEY_FEATURES)
    assert load_bundle(repo / "models" / "record").meta["rhythm_rules"]["premature"] is None  # no reference: off
    shown = json.loads((repo / "metrics" / "record-reference" / "reference.json").read_text())
    assert set(shown) == {"232", "213"}
    assert (repo / "plots" / "record-reference" / "reference.png").stat().st_size > 10_000
    assert "reference model" in (repo / "reports" / "modelling.md").read_text()


def test_changing_a_split_param_reruns_only_that_split(reproduced):
    repo, env, _ = reproduced
    original = (repo / "params.yaml").read_text()
    try:
        set_param(repo, ("split", "kaggle", "val_size"), 0.15)
        stale = stale_stages(repo, env)
        assert "split@kaggle" in stale
        assert "split@interpatient" not in stale and "ingest" not in stale
    finally:
        (repo / "params.yaml").write_text(original)


def test_a_failed_download_under_dvc_keeps_the_verified_records(reproduced, tmp_path):
    """DVC deletes a stage's outputs before its command runs unless they persist: the download's do."""
    repo, env, _ = reproduced
    raw = repo / "data" / "raw" / "mitdb"
    before = {p.name: p.read_bytes() for p in raw.iterdir()}
    broken = tmp_path / "mirror"
    shutil.copytree(FIXTURE_MIRROR, broken)
    damaged = sorted(broken.glob("*.dat"))[0]
    damaged.write_bytes(damaged.read_bytes()[:1000])  # truncated
    result = subprocess.run([*DVC, "repro", "--force", "--single-item", "download"], cwd=repo, capture_output=True,
                            text=True, env={**env, "MITDB_MIRROR": str(broken)}, timeout=300)  # fmt: skip
    assert result.returncode != 0 and damaged.name in result.stdout + result.stderr
    assert {p.name: p.read_bytes() for p in raw.iterdir()} == before


def test_ingest_refuses_records_changed_since_the_download(reproduced):
    repo, env, _ = reproduced
    atr = sorted((repo / "data" / "raw" / "mitdb").glob("*.atr"))[0]
    original = atr.read_bytes()
    atr.chmod(0o644)
    try:
        atr.write_bytes(original[:100] + bytes([original[100] ^ 0xFF]) + original[101:])  # one flipped byte
        result = subprocess.run([*DVC, "repro", "--force", "--single-item", "ingest"], cwd=repo, capture_output=True,
                                text=True, env=env, timeout=300)  # fmt: skip
        assert result.returncode != 0
        assert f"{atr.name}: checksum mismatch" in result.stdout + result.stderr
    finally:
        atr.write_bytes(original)
