"""The batch CLI is strict with careless input and leaves nothing half-written: text in a numeric column,
an empty file, its own input as output or errors file, an unwritable output, and a SIGTERM mid-run."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgbeats.data.dataset import SAMPLE_COLUMNS
from tests.api.conftest import server_env
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def rows(fixture_beats) -> pd.DataFrame:
    return fixture_beats[[*SAMPLE_COLUMNS, "rr_prev", "length"]].head(6).reset_index(drop=True)


def batch(*args: object, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ecgbeats.serving.batch", *map(str, args), "--no-progress"],
        cwd=ROOT, env=server_env(), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def refused(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def headed_csv(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False, float_format="%.9g")
    return path


@pytest.mark.parametrize("column, value", [("rr_prev", "abc"), ("length", "twelve")])
def test_text_in_an_optional_numeric_column_is_reported_with_row_and_column(tmp_path, rows, bundle_dir, column, value):
    frame = rows.astype(object)
    frame.loc[3, column] = value
    path = headed_csv(tmp_path / "beats.csv", frame)
    out = tmp_path / "out.csv"
    refused(batch(path, out, "--model", bundle_dir), f"row 4: {column}: '{value}' is not a finite number")
    assert not out.exists()
    errors = tmp_path / "errors.csv"
    result = batch(path, out, "--model", bundle_dir, "--on-error", "skip", "--errors", errors)
    assert result.returncode == 0, result.stderr
    assert len(pd.read_csv(out)) == len(rows) - 1
    assert pd.read_csv(errors).to_dict("records") == [
        {"row": 4, "problem": f"{column}: '{value}' is not a finite number"}
    ]


def test_a_blank_optional_value_is_unknown_not_an_error(tmp_path, rows, bundle_dir):
    frame = rows.copy()
    frame.loc[2, "rr_prev"] = np.nan  # written as an empty cell
    out = tmp_path / "out.csv"
    result = batch(headed_csv(tmp_path / "beats.csv", frame), out, "--model", bundle_dir)
    assert result.returncode == 0, result.stderr
    assert len(pd.read_csv(out)) == len(rows)


@pytest.mark.parametrize("content", ["", ",".join(SAMPLE_COLUMNS) + "\n"], ids=["empty", "header only"])
def test_an_input_without_beats_is_an_error(tmp_path, bundle_dir, content):
    path = tmp_path / "beats.csv"
    path.write_text(content)
    out = tmp_path / "out.parquet"
    refused(batch(path, out, "--model", bundle_dir), "no beats to score")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["beats.csv"]


def test_the_output_may_not_overwrite_the_input(tmp_path, rows, bundle_dir):
    path = headed_csv(tmp_path / "beats.csv", rows)
    before = path.read_bytes()
    refused(batch(path, path, "--model", bundle_dir), "would overwrite the input")
    assert path.read_bytes() == before


@pytest.mark.parametrize("target", ["input", "output"])
def test_the_errors_file_may_not_overwrite_the_input_or_the_output(tmp_path, rows, bundle_dir, target):
    frame = rows.astype(object)
    frame.loc[3, "rr_prev"] = "abc"  # a row to skip: the errors file would have something to say
    path = headed_csv(tmp_path / "beats.csv", frame)
    before = path.read_bytes()
    out = tmp_path / "out.csv"
    errors = path if target == "input" else out
    result = batch(path, out, "--model", bundle_dir, "--on-error", "skip", "--errors", errors)
    refused(result, f"{errors}: the --errors file would overwrite the {target}; name another file")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["beats.csv"]  # no output either


@pytest.mark.parametrize("ext", ["hea", "dat"])
def test_the_errors_file_may_not_overwrite_a_file_of_the_input_record(mirror, tmp_path, bundle_dir, ext):
    target = mirror / f"232.{ext}"
    before = target.read_bytes()
    out = tmp_path / "out.csv"
    result = batch(mirror / "232", out, "--model", bundle_dir, "--errors", target)
    refused(result, f"{target}: the --errors file would overwrite the input; name another file")
    assert target.read_bytes() == before and not out.exists()


def test_the_errors_file_is_written_only_when_rows_were_skipped(tmp_path, rows, bundle_dir):
    path = headed_csv(tmp_path / "beats.csv", rows)
    out, errors = tmp_path / "out.csv", tmp_path / "errors.csv"
    args = (path, out, "--model", bundle_dir, "--on-error", "skip", "--errors", errors)
    result = batch(*args)
    assert result.returncode == 0, result.stderr
    assert len(pd.read_csv(out)) == len(rows) and not errors.exists()
    # a list of an earlier run's skipped rows is not left to pass for this run's
    errors.write_text("row,problem\n4,rr_prev: 'abc' is not a finite number\n")
    result = batch(*args)
    assert result.returncode == 0, result.stderr
    assert not errors.exists() and f"removed the errors file of an earlier run: {errors}" in result.stderr
    # a run that fails changes nothing, the earlier errors file included (as its output)
    errors.write_text("row,problem\n4,rr_prev: 'abc' is not a finite number\n")
    refused(batch(tmp_path / "absent.csv", out, "--model", bundle_dir, "--errors", errors), "no such file")
    assert errors.read_text().startswith("row,problem\n4,")


def test_an_unwritable_output_is_one_line(tmp_path, rows, bundle_dir):
    path = headed_csv(tmp_path / "beats.csv", rows)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the output's directory should be")
    refused(batch(path, blocker / "out.csv", "--model", bundle_dir), str(blocker))


def test_sigterm_mid_run_leaves_no_output_and_no_temporary_file(tmp_path, fixture_beats, bundle_dir):
    big = pd.concat([fixture_beats[SAMPLE_COLUMNS]] * 40, ignore_index=True)  # tens of thousands of beats
    path = tmp_path / "in" / "beats.csv"
    path.parent.mkdir()
    big.to_csv(path, header=False, index=False, float_format="%.6g")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ecgbeats.serving.batch", str(path), str(out_dir / "scored.csv"), "--model",
         str(bundle_dir), "--chunk-size", "200", "--no-progress"],
        cwd=ROOT, env=server_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not list(out_dir.iterdir()) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # until the temporary output exists: the run is writing
    assert proc.poll() is None, "the run ended before it could be stopped; make the input larger"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert list(out_dir.iterdir()) == [], "a partial or temporary file was left behind"
