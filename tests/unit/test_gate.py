from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ecgbeats.operations.gate import (
    GateConfigError,
    Guard,
    accepted_regressions,
    compare,
    downstream_stages,
    flatten,
    floor_ratchet_failures,
    parse_config,
    render_report,
    render_table,
    stages_missing_from_lock,
    stale_stages,
)
from scripts import metric_gate

ROOT = Path(__file__).resolve().parents[2]

# --- pure logic -------------------------------------------------------------------------------

F1 = Guard("m/test.json", "macro_f1", "higher", 0.005, floor=0.9)
ECE = Guard("m/test.json", "ece", "lower", 0.001, floor=0.01)
CLASSES = Guard("m/data.json", "classes.*", "equal", 0)


def one(rows):
    assert len(rows) == 1
    return rows[0]


def test_flatten_makes_dotted_keys_like_dvc():
    data = {"a": 1, "b": {"c": 2.5, "d": {"e": None}}, "l": [3, {"x": 4}], "s": "wfdb"}
    assert flatten(data) == {"a": 1, "b.c": 2.5, "b.d.e": None, "l.0": 3, "l.1.x": 4, "s": "wfdb"}


def test_improvement_passes():
    row = one(compare([F1], {"m/test.json": {"macro_f1": 0.95}}, {"m/test.json": {"macro_f1": 0.94}}))
    assert row.ok and row.status == "improved"
    assert row.change == pytest.approx(0.01)


def test_drop_within_tolerance_passes_even_at_the_exact_bound():
    row = one(compare([F1], {"m/test.json": {"macro_f1": 0.937514}}, {"m/test.json": {"macro_f1": 0.942514}}))
    assert row.ok, row.failures  # 0.942514 - 0.937514 is 0.005000000000000004 in floats


def test_regression_beyond_tolerance_fails():
    row = one(compare([F1], {"m/test.json": {"macro_f1": 0.93}}, {"m/test.json": {"macro_f1": 0.94}}))
    assert not row.ok
    assert row.failures == ["dropped by 0.01 (tolerance 0.005)"]


def test_floor_fails_even_without_a_previous_version():
    row = one(compare([F1], {"m/test.json": {"macro_f1": 0.85}}, {}))
    assert row.failures == ["below floor 0.9"]
    ok = one(compare([F1], {"m/test.json": {"macro_f1": 0.95}}, {"m/test.json": None}))
    assert ok.ok and ok.status == "new file: floor only"


def test_lower_is_better_uses_the_floor_as_a_ceiling():
    rows = compare([ECE], {"m/test.json": {"ece": 0.02}}, {"m/test.json": {"ece": 0.004}})
    assert one(rows).failures == ["above ceiling 0.01", "rose by 0.016 (tolerance 0.001)"]
    assert one(compare([ECE], {"m/test.json": {"ece": 0.003}}, {"m/test.json": {"ece": 0.004}})).ok


def test_missing_file_and_missing_key_fail_loudly():
    missing_file = one(compare([F1], {}, {"m/test.json": {"macro_f1": 0.94}}))
    assert missing_file.failures == ["missing file"]
    reason = one(compare([F1], {}, {}, {"m/test.json": "unreadable file: bad JSON"}))
    assert reason.failures == ["unreadable file: bad JSON"]
    missing_key = one(compare([F1], {"m/test.json": {"accuracy": 0.99}}, {"m/test.json": {"macro_f1": 0.94}}))
    assert missing_key.failures == ["missing key"]


def test_non_numeric_values_fail():
    row = one(compare([F1], {"m/test.json": {"macro_f1": None}}, {"m/test.json": {"macro_f1": 0.94}}))
    assert row.failures == ["not a finite number: None"]


def test_equal_direction_fails_on_any_change_and_globs_expand_in_file_order():
    before = {"m/data.json": {"classes": {"N": 10, "S": 3, "Q": 1}}}
    same = compare([CLASSES], {"m/data.json": {"classes": {"N": 10, "S": 3, "Q": 1}}}, before)
    assert [r.metric for r in same] == ["classes.N", "classes.S", "classes.Q"]
    assert all(r.ok for r in same)
    changed = compare([CLASSES], {"m/data.json": {"classes": {"N": 11, "S": 3}}}, before)
    assert {r.metric: r.failures for r in changed if not r.ok} == {
        "classes.N": ["changed by +1 (tolerance 0)"],
        "classes.Q": ["missing key"],
    }
    nothing = one(compare([CLASSES], {"m/data.json": {"beats": 5}}, {}))
    assert nothing.metric == "classes.*" and nothing.failures == ["missing key"]


def test_glob_never_picks_up_timings():
    guard = Guard("m/train.json", "*", "equal", 0)
    rows = compare([guard], {"m/train.json": {"features": 9, "training_seconds": 3.1}}, {})
    assert [r.metric for r in rows] == ["features"]


def test_new_key_in_an_existing_file_is_checked_against_the_floor_only():
    row = one(compare([F1], {"m/test.json": {"macro_f1": 0.95}}, {"m/test.json": {"accuracy": 0.9}}))
    assert row.ok and row.status == "new key: floor only"


def test_report_table_columns_and_verdict():
    rows = compare([F1], {"m/test.json": {"macro_f1": 0.93}}, {"m/test.json": {"macro_f1": 0.94}})
    table = render_table(rows).splitlines()
    assert table[0] == "| Path | Metric | Previous | Current | Change | Floor | Tolerance | Status |"
    assert table[2] == (
        "| m/test.json | macro_f1 | 0.94 | 0.93 | -0.01 | >= 0.9 | -0.005 | FAIL: dropped by 0.01 (tolerance 0.005) |"
    )
    report = render_report(rows, {"m/test.json": "abc1234 (x)"}, ["dvc.lock is stale"])
    assert "**FAILED** (2):" in report
    assert "- m/test.json macro_f1: dropped by 0.01 (tolerance 0.005)" in report
    assert "**PASSED**" in render_report([], notes=["dvc.lock: up to date"])


def config(*entries, **defaults):
    return {"defaults": defaults, "metrics": list(entries)} if defaults else {"metrics": list(entries)}


def test_parse_config_applies_defaults():
    guards = parse_config(config({"file": "a.json", "key": "x", "tolerance": 0.01, "floor": 0.5}, direction="higher"))
    assert guards == [Guard("a.json", "x", "higher", 0.01, 0.5)]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"file": "a.json", "key": "x", "direction": "up", "tolerance": 0}, "direction"),
        ({"file": "a.json", "key": "x", "direction": "higher", "tolerance": -1}, "tolerance"),
        ({"file": "a.json", "key": "x", "direction": "higher"}, "tolerance"),
        ({"file": "a.json", "key": "x", "direction": "higher", "tolerance": 0, "flor": 1}, "unknown fields"),
        ({"file": "a.json", "key": "x", "direction": "equal", "tolerance": 0, "floor": 1}, "floor"),
        ({"file": "/abs.json", "key": "x", "direction": "higher", "tolerance": 0}, "relative"),
        ({"file": "a.json", "key": "training_seconds", "direction": "lower", "tolerance": 1}, "must not be guarded"),
        ({"file": "a.json", "direction": "higher", "tolerance": 0}, "key"),
    ],
)
def test_parse_config_rejects_bad_entries(entry, message):
    with pytest.raises(GateConfigError, match=message):
        parse_config(config(entry))


def test_parse_config_rejects_duplicates_and_empty_lists():
    entry = {"file": "a.json", "key": "x", "direction": "higher", "tolerance": 0}
    with pytest.raises(GateConfigError, match="twice"):
        parse_config(config(entry, entry))
    with pytest.raises(GateConfigError, match="non-empty"):
        parse_config({"metrics": []})
    with pytest.raises(GateConfigError, match="mapping"):
        parse_config(["not", "a", "mapping"])


def test_floors_only_ratchet_up():
    old = [F1, ECE, Guard("a.json", "x", "higher", 0.0)]
    assert floor_ratchet_failures(old, [Guard("m/test.json", "macro_f1", "higher", 0.01, 0.91), ECE]) == []
    lowered = [Guard("m/test.json", "macro_f1", "higher", 0.005, 0.89), Guard("m/test.json", "ece", "lower", 0, 0.02)]
    assert floor_ratchet_failures(old, lowered) == [
        "m/test.json macro_f1: floor lowered from 0.9 to 0.89",
        "m/test.json ece: ceiling raised from 0.01 to 0.02",
    ]
    assert floor_ratchet_failures(old, [Guard("m/test.json", "macro_f1", "higher", 0.005), ECE]) == [
        "m/test.json macro_f1: floor 0.9 was removed"
    ]
    assert floor_ratchet_failures(old, [ECE]) == ["m/test.json macro_f1: guard with floor 0.9 was removed"]


# captured from dvc 3.67 on a tiny pipeline
DRY_STALE = """Running stage 'one':
> python a.py > out.txt

Stage 'two@u' didn't change, skipping
Stage 'two@v' didn't change, skipping
Use `dvc push` to send your updates to remote storage.
"""
DRY_CLEAN = """Stage 'one' didn't change, skipping
Stage 'two@u' didn't change, skipping
Data and pipelines are up to date.
"""
DRY_FAILED = """Stage 'one' didn't change, skipping
ERROR: failed to reproduce 'two@u': [Errno 2] No such file or directory: '/tmp/dvcprobe/out.txt'
"""
# captured from `dvc repro --dry --allow-missing --keep-going` on a clean clone of this project
# after changing params train.learning_rate and evaluate.bootstrap (no data in the clone)
DRY_KEEP_GOING = """Stage 'download' didn't change, skipping
Stage 'ingest' didn't change, skipping
Stage 'split@kaggle' didn't change, skipping
Stage 'split@interpatient' didn't change, skipping
WARNING: [Errno 2] No such file or directory: '/tmp/gateclone/data/processed/kaggle'
WARNING: Stage 'evaluate@kaggle-test' will be skipped due to this failure
WARNING: [Errno 2] No such file or directory: '/tmp/gateclone/data/processed/interpatient'
WARNING: Stages 'evaluate@interpatient-test' and 'evaluate@interpatient-holdout' will be skipped due to this failure
WARNING: [Errno 2] No such file or directory: '/tmp/gateclone/data/processed/kaggle'
ERROR: failed to reproduce stages: 'train@kaggle', 'train@interpatient', 'baselines@kaggle', \
'baselines@interpatient', 'learning_curve@kaggle' and 'learning_curve@interpatient'
"""


def test_stale_stages_are_parsed_from_dvc_repro_dry_output():
    assert stale_stages(DRY_STALE) == ["one"]
    assert stale_stages(DRY_CLEAN) == []
    assert stale_stages(DRY_FAILED) == ["two@u"]
    assert stale_stages("Running stage 'train@kaggle':\n> x\nRunning stage 'evaluate@kaggle-test':\n") == [
        "train@kaggle",
        "evaluate@kaggle-test",
    ]
    assert stale_stages(DRY_KEEP_GOING) == [
        "train@kaggle",
        "train@interpatient",
        "baselines@kaggle",
        "baselines@interpatient",
        "learning_curve@kaggle",
        "learning_curve@interpatient",
    ]
    assert downstream_stages(DRY_KEEP_GOING) == [
        "evaluate@kaggle-test",
        "evaluate@interpatient-test",
        "evaluate@interpatient-holdout",
    ]
    assert downstream_stages(DRY_STALE) == []


def test_stages_missing_from_lock():
    lock = {"schema": "2.0", "stages": {"one": {}, "two@u": {}}}
    assert stages_missing_from_lock(["one", "two@u", "two@v"], lock) == ["two@v"]
    assert stages_missing_from_lock(["one"], None) == ["one"]


def test_repository_gate_config_is_valid_and_its_keys_exist():
    guards = metric_gate.read_config(ROOT / "gate.yaml")
    assert {g.file for g in guards} >= {
        "metrics/data.json",
        "metrics/kaggle/test.json",
        "metrics/interpatient/test.json",
        "metrics/interpatient/holdout.json",
    }
    current, errors = metric_gate.load_current(ROOT, sorted({g.file for g in guards}))
    assert not errors
    rows = compare(guards, current, current)
    assert [f"{r.path} {r.metric}" for r in rows if "missing key" in r.failures] == []


# --- the CLI on a temporary git repository ----------------------------------------------------

GATE = {
    "metrics": [
        {"file": "metrics/test.json", "key": "macro_f1", "direction": "higher", "tolerance": 0.005, "floor": 0.9},
        {"file": "metrics/data.json", "key": "classes.*", "direction": "equal", "tolerance": 0},
    ]
}


def sh(cwd: Path, *args: str) -> str:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path, monkeypatch):
    for name, value in {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "DVC_NO_ANALYTICS": "1",
    }.items():
        monkeypatch.setenv(name, value)
    root = tmp_path / "repo"
    root.mkdir()
    sh(root, "git", "init", "-q", "-b", "main")
    return root


def write(root: Path, macro_f1: float | None = 0.94, classes: dict | None = None, gate: dict | None = None) -> None:
    (root / "metrics").mkdir(exist_ok=True)
    test = {"accuracy": 0.99} if macro_f1 is None else {"accuracy": 0.99, "macro_f1": macro_f1}
    (root / "metrics" / "test.json").write_text(json.dumps(test))
    (root / "metrics" / "data.json").write_text(json.dumps({"classes": classes or {"N": 10, "S": 2}}))
    (root / "gate.yaml").write_text(yaml.safe_dump(gate or GATE))


def commit(root: Path, message: str) -> str:
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-q", "-m", message)
    return sh(root, "git", "rev-parse", "--short", "HEAD").strip()


def gate(root: Path, *args: str) -> int:
    return metric_gate.main(["--repo", str(root), *args])


def test_cli_first_commit_applies_floors_only(repo, capsys):
    write(repo)
    commit(repo, "first")
    assert gate(repo) == 0
    out = capsys.readouterr().out
    assert "new file: floor only" in out
    assert "metrics/test.json: no previous version (new file): floors only" in out


def test_cli_compares_with_the_commit_before_the_change(repo, capsys):
    write(repo, macro_f1=0.94)
    first = commit(repo, "first")
    write(repo, macro_f1=0.95)
    commit(repo, "better model")
    assert gate(repo) == 0
    out = capsys.readouterr().out
    assert "| metrics/test.json | macro_f1 | 0.94 | 0.95 | +0.01 | >= 0.9 | -0.005 | improved |" in out
    assert f"metrics/test.json: {first} (first)" in out

    write(repo, macro_f1=0.92)
    commit(repo, "worse model")
    (repo / "README").write_text("a later commit that does not touch the metrics\n")
    commit(repo, "docs")
    assert gate(repo) == 0  # HEAD did not change the metrics: compared with the same version
    assert gate(repo, "--base", "HEAD~2") == 1  # ... but the change itself regressed
    out = capsys.readouterr().out
    assert "FAIL: dropped by 0.03 (tolerance 0.005)" in out
    assert gate(repo, "--base", "no-such-rev") == 2


def test_cli_regression_in_the_workspace_is_compared_with_head(repo, capsys):
    write(repo, macro_f1=0.90)
    commit(repo, "first")
    write(repo, macro_f1=0.95)
    commit(repo, "better")
    write(repo, macro_f1=0.93)  # uncommitted experiment result
    assert gate(repo) == 1
    out = capsys.readouterr().out
    assert "| 0.95 | 0.93 | -0.02 |" in out and "**FAILED**" in out


def test_cli_missing_file_missing_key_and_changed_counts_fail(repo, capsys):
    write(repo)
    commit(repo, "first")
    write(repo, macro_f1=None, classes={"N": 10, "S": 3})
    assert gate(repo) == 1
    out = capsys.readouterr().out
    assert "metrics/test.json macro_f1: missing key" in out
    assert "metrics/data.json classes.S: changed by +1 (tolerance 0)" in out
    (repo / "metrics" / "test.json").unlink()
    assert gate(repo) == 1
    assert "metrics/test.json macro_f1: missing file" in capsys.readouterr().out
    (repo / "metrics" / "test.json").write_text("{not json")
    assert gate(repo) == 1
    assert "unreadable file" in capsys.readouterr().out


def test_cli_missing_metrics_file_declared_in_dvc_yaml_fails(repo, capsys):
    write(repo)
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {}, "metrics": ["metrics/test.json", "metrics/x.json"]}))
    commit(repo, "first")
    assert gate(repo) == 1
    assert "metrics/x.json: missing file (declared in dvc.yaml)" in capsys.readouterr().out


def test_cli_config_errors_exit_2(repo):
    write(repo)
    commit(repo, "first")
    (repo / "gate.yaml").write_text("metrics: [")
    assert gate(repo) == 2
    (repo / "gate.yaml").write_text(yaml.safe_dump({"metrics": [{"file": "metrics/test.json", "key": "x"}]}))
    assert gate(repo) == 2
    assert gate(repo, "--config", "absent.yaml") == 2


def test_cli_floors_may_not_go_down(repo, capsys):
    write(repo)
    commit(repo, "first")
    looser = json.loads(json.dumps(GATE))
    looser["metrics"][0]["floor"] = 0.8
    write(repo, gate=looser)
    assert gate(repo) == 1
    assert "metrics/test.json macro_f1: floor lowered from 0.9 to 0.8" in capsys.readouterr().out
    commit(repo, "lower the floor")
    assert gate(repo) == 1  # still caught once committed: compared with the gate.yaml before
    tighter = json.loads(json.dumps(GATE))
    tighter["metrics"][0]["floor"] = 0.92
    write(repo, gate=tighter)
    assert gate(repo) == 0
    assert "no floor went down" in capsys.readouterr().out


def test_cli_writes_the_report_file(repo, capsys):
    write(repo)
    commit(repo, "first")
    out = repo / "reports" / "gate.md"
    assert gate(repo, "--output", str(out)) == 0
    assert out.read_text() == capsys.readouterr().out


# --- dvc.lock staleness, for real -----------------------------------------------------------

DVC_YAML = """stages:
  one:
    cmd: python a.py > out.txt
    deps: [a.py]
    params: [x]
    outs: [out.txt]
  two:
    matrix:
      p: [u, v]
    cmd: "cp out.txt m_${item.p}.json"
    deps: [out.txt]
    outs:
      - m_${item.p}.json:
          cache: false
"""


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_check_lock_on_a_real_dvc_repository(repo):
    pytest.importorskip("dvc")
    (repo / "params.yaml").write_text("x: 1\n")
    (repo / "a.py").write_text("print('{}')\n")
    (repo / "dvc.yaml").write_text(DVC_YAML)
    sh(repo, sys.executable, "-m", "dvc", "init", "-q")
    sh(repo, sys.executable, "-m", "dvc", "repro", "-q")
    commit(repo, "pipeline")
    (repo / "out.txt").unlink()  # data outputs are absent in CI
    shutil.rmtree(repo / ".dvc" / "cache", ignore_errors=True)
    assert metric_gate.check_lock(repo) == ([], "dvc.lock: up to date with code, params and dependencies")

    (repo / "params.yaml").write_text("x: 2\n")
    failures, _ = metric_gate.check_lock(repo)
    assert failures == ["dvc.lock is stale: stage 'one' would run"]
    sh(repo, "git", "checkout", "-q", "params.yaml")

    (repo / "m_u.json").write_text('{"edited": true}')  # a committed metric no longer matches dvc.lock
    failures, note = metric_gate.check_lock(repo)  # its input out.txt is absent: dvc cannot dry-run it
    assert failures == ["dvc.lock is stale: stage 'two@u' would run"]
    sh(repo, "git", "checkout", "-q", "m_u.json")

    with (repo / "dvc.yaml").open("a") as handle:
        handle.write("  three:\n    cmd: echo 3 > three.txt\n    outs: [three.txt]\n")
    failures, _ = metric_gate.check_lock(repo)
    assert failures == ["dvc.lock has no entry for stage 'three'"]
    assert gate(repo, "--lock-only") == 1


def test_cli_regression_accepted_in_the_commit_message_passes_but_floors_still_hold(repo, capsys):
    write(repo, macro_f1=0.95)
    commit(repo, "first")
    write(repo, macro_f1=0.93)
    commit(repo, "trade-off\n\nMetric-Regression-Accepted: metrics/test.json macro_f1  fewer false alarms on S\n")
    assert gate(repo) == 0
    assert "dropped by 0.02: accepted (Metric-Regression-Accepted)" in capsys.readouterr().out
    (repo / "README").write_text("later\n")
    commit(repo, "docs")
    assert gate(repo) == 0  # the acceptance belongs to the commit that produced these metrics
    write(repo, macro_f1=0.85)
    commit(repo, "below the floor\n\nMetric-Regression-Accepted: metrics/test.json macro_f1  no\n")
    assert gate(repo) == 1
    assert "below floor 0.9" in capsys.readouterr().out


def test_acceptance_names_file_and_key():
    message = "subject\n\nMetric-Regression-Accepted: metrics/a.json accuracy  reason\nother: line\n"
    assert accepted_regressions(message) == {("metrics/a.json", "accuracy")}
    assert accepted_regressions("Metric-Regression-Accepted metrics/a.json accuracy") == set()
