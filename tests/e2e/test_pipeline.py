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

pytestmark = pytest.mark.e2e

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
    ("features", "tsfresh", "time_calculators_beats"): 3,
    ("shift", "subsample"): {"test": 200, "holdout": 300},
    ("shift", "bootstrap"): 20,
    ("shift", "min_template_beats"): 5,
    ("shift", "mitigations"): {"baseline": {}, "record_relative": {"record_relative": {"window": 20}}},
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


@pytest.fixture(scope="module")
def reproduced(repo_copy):
    repo, env = repo_copy
    result = run([sys.executable, "-m", "dvc", "repro"], repo, env)
    return repo, env, result


def test_repro_builds_beats_and_both_protocols(reproduced):
    repo, _, _ = reproduced
    data = json.loads((repo / "metrics" / "data.json").read_text())
    assert data["records"] == 6
    assert all(count > 0 for count in data["classes"].values())
    assert data["fidelity"]["rows"] == 20
    for protocol, sets in (("kaggle", {"train", "val", "test"}), ("interpatient", {"train", "val", "test", "holdout"})):
        split = json.loads((repo / "metrics" / protocol / "split.json").read_text())
        assert set(split["sets"]) == sets
        assert sum(s["beats"] for s in split["sets"].values()) + split["excluded_beats"] == data["beats"]
        assert {p.name for p in (repo / "data" / "processed" / protocol).iterdir()} == {f"{s}.parquet" for s in sets}


def test_repro_trains_and_evaluates_both_protocols(reproduced):
    from ecgbeats.bundle import load_bundle

    repo, _, _ = reproduced
    for protocol, sets in (("kaggle", ["test"]), ("interpatient", ["test", "holdout"])):
        train = json.loads((repo / "metrics" / protocol / "train.json").read_text())
        assert train["best_iteration"] >= 1
        bundle = load_bundle(repo / "models" / protocol)
        assert bundle.meta["protocol"] == protocol and bundle.meta["provenance"]["commit"]
        for name in sets:
            report = json.loads((repo / "metrics" / protocol / f"{name}.json").read_text())
            assert {"accuracy", "macro_f1", "per_class", "ci95"} <= set(report)
            assert set(report["per_class"]["N"]) >= {"precision", "recall", "f1", "support"}
            for figure in ("confusion.png", "roc_pr.png", "reliability.png", "errors.png", "confusion.csv"):
                assert (repo / "plots" / protocol / name / figure).is_file()
        baselines = json.loads((repo / "metrics" / protocol / "baselines.json").read_text())
        assert set(baselines) == {"majority_class", "logistic_regression", "lightgbm_raw_samples"}
        for curve in ("multi_logloss", "macro_f1"):
            assert (
                repo / "plots" / protocol / "train" / "live" / "plots" / "metrics" / "val" / f"{curve}.tsv"
            ).is_file()


def test_repro_runs_the_processing_stages_for_both_protocols(reproduced):
    import pandas as pd

    repo, _, _ = reproduced
    for protocol in ("kaggle", "interpatient"):
        interim = repo / "data" / "interim" / protocol
        splits = sorted(p.name for p in (repo / "data" / "processed" / protocol).glob("*.parquet"))
        for step in ("imputed", "augmented"):
            assert sorted(p.name for p in (interim / step).glob("*.parquet")) == splits
        features = interim / "features"
        assert (features / "tsfresh_settings.json").is_file() and (features / "relevance.csv").is_file()
        for name in splits:  # the frozen tsfresh columns, row for row with each split
            assert len(pd.read_parquet(features / name)) == len(pd.read_parquet(interim / "augmented" / name))
        study = json.loads((repo / "metrics" / "processing" / f"impute_{protocol}.json").read_text())
        assert {row["method"] for row in study["levels"]} == {"none", "zero", "linear", "pchip", "knn"}
    for name in ("features_ablation", "tsfresh_ablation", "imbalance_kaggle", "imbalance_interpatient"):
        assert json.loads((repo / "metrics" / "processing" / f"{name}.json").read_text())["set"] == "validation"
    report = (repo / "reports" / "processing.md").read_text()
    assert "## " in report and "$" not in report  # every $placeholder filled


def test_repro_runs_the_shift_stage(reproduced):
    repo, _, _ = reproduced
    shift = json.loads((repo / "metrics" / "shift.json").read_text())
    assert {"patient_shift", "synthetic", "label_shift", "drift", "mitigations"} <= set(shift)
    for kind, rows in shift["synthetic"].items():
        assert rows[0]["severity"] == 0 and len(rows) > 1, kind
    assert set(shift["mitigations"]) == {"baseline", "record_relative"}
    assert "$" not in (repo / "reports" / "shift.md").read_text()


def test_plots_render(reproduced):
    repo, env, _ = reproduced
    result = run([sys.executable, "-m", "dvc", "plots", "show", "--json"], repo, env)
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
    again = run([sys.executable, "-m", "dvc", "repro"], repo, env)
    assert "Running stage" not in again.stdout
    shown = run([sys.executable, "-m", "dvc", "metrics", "show"], repo, env).stdout
    assert "metrics/data.json" in shown and "classes.N" in shown


def test_changing_a_split_param_reruns_only_that_split(reproduced):
    repo, env, _ = reproduced
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["split"]["kaggle"]["val_size"] = 0.15
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = run([sys.executable, "-m", "dvc", "status"], repo, env).stdout
    assert "split@kaggle" in status
    assert "split@interpatient" not in status and "ingest" not in status
