"""The batch CLI on the fixtures: CSV, parquet and WFDB inputs, malformed rows, atomic output."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from ecgbeats.data.dataset import SAMPLE_COLUMNS
from ecgbeats.serving.batch import main
from ecgbeats.serving.scoring import beat_frame
from tests.api.conftest import server_env
from tests.conftest import FIXTURE_MIRROR, ROOT

PROBA = ["p_N", "p_S", "p_V", "p_F", "p_Q"]


@pytest.fixture(scope="module")
def beats(fixture_beats):
    return fixture_beats.groupby("record").head(40).reset_index(drop=True)


@pytest.fixture
def kaggle_csv(tmp_path, beats):
    path = tmp_path / "beats.csv"
    values = np.column_stack([beats[SAMPLE_COLUMNS].to_numpy(np.float64), beats["label"].to_numpy()])
    pd.DataFrame(values).to_csv(path, header=False, index=False, float_format="%.9g")
    return path


def cli(*args):
    return main([*map(str, args), "--no-progress"])


def test_parquet_to_parquet_matches_the_bundle(tmp_path, beats, bundle_dir, scorer):
    beats.to_parquet(tmp_path / "in.parquet", index=False)
    assert cli(tmp_path / "in.parquet", tmp_path / "out.parquet", "--model", bundle_dir, "--chunk-size", 37) == 0
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert out["row"].tolist() == list(range(1, len(beats) + 1))
    np.testing.assert_allclose(out[PROBA], scorer.bundle.predict_proba(beats), rtol=1e-6)
    assert (out["record"] == beats["record"]).all() and (out["label"] == beats["label"]).all()
    assert set(out["model_version"]) == {scorer.version}


def test_kaggle_csv_to_csv_through_the_command(tmp_path, kaggle_csv, beats, bundle_dir, scorer):
    result = subprocess.run(
        [sys.executable, "-m", "ecgbeats.serving.batch", kaggle_csv, tmp_path / "out.csv", "--model", bundle_dir],
        cwd=ROOT, env=server_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "100%" in result.stderr  # the progress bar
    out = pd.read_csv(tmp_path / "out.csv")
    proba = scorer.bundle.predict_proba(beat_frame(beats[SAMPLE_COLUMNS].to_numpy()))  # no RR in a Kaggle CSV
    np.testing.assert_allclose(out[PROBA], proba, atol=2e-6)
    assert out["class_name"].tolist() == ["NSVFQ"[c] for c in proba.argmax(axis=1)]


@pytest.mark.parametrize("peaks", ["detect", "annotations"])
def test_wfdb_record(tmp_path, bundle_dir, peaks, fixture_beats):
    out_path = tmp_path / "out.parquet"
    assert cli(FIXTURE_MIRROR / "232", out_path, "--model", bundle_dir, "--peaks", peaks) == 0
    out = pd.read_parquet(out_path)
    annotated = fixture_beats[fixture_beats["record"] == "232"]
    if peaks == "annotations":
        assert out["r_peak"].tolist() == annotated["r_peak"].tolist()
    else:
        assert abs(len(out) - len(annotated)) <= 3 and out["time_s"].is_monotonic_increasing
    assert np.allclose(out[PROBA].sum(axis=1), 1)


def break_rows(path):
    lines = path.read_text().splitlines()
    lines[2] = lines[2] + ",0.5,0.5"  # row 3: 190 columns
    cells = lines[6].split(",")
    cells[10] = "abc"  # row 7: text
    lines[6] = ",".join(cells)
    cells = lines[9].split(",")
    cells[0] = "3.5"  # row 10: out of range
    lines[9] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


def test_malformed_row_stops_the_run_and_writes_nothing(tmp_path, kaggle_csv, bundle_dir, capsys):
    break_rows(kaggle_csv)
    out_dir = tmp_path / "out"
    assert cli(kaggle_csv, out_dir / "pred.parquet", "--model", bundle_dir, "--chunk-size", 5) == 2
    assert "row 3: 190 columns" in capsys.readouterr().err
    assert not out_dir.exists() or list(out_dir.iterdir()) == []  # no output, no temporary file


def test_malformed_rows_skipped_on_request(tmp_path, kaggle_csv, beats, bundle_dir):
    break_rows(kaggle_csv)
    out, errors = tmp_path / "pred.csv", tmp_path / "errors.csv"
    assert cli(kaggle_csv, out, "--model", bundle_dir, "--on-error", "skip", "--errors", errors, "--chunk-size", 4) == 0
    table = pd.read_csv(out)
    assert len(table) == len(beats) - 3 and not {3, 7, 10} & set(table["row"])
    skipped = pd.read_csv(errors)
    assert skipped["row"].tolist() == [3, 7, 10]
    assert skipped["problem"].str.startswith(("190 columns", "s010: 'abc'", "s000: 3.5 is outside")).all()


def test_a_failed_run_keeps_the_previous_output(tmp_path, kaggle_csv, bundle_dir):
    out = tmp_path / "pred.csv"
    out.write_text("previous\n")
    break_rows(kaggle_csv)
    assert cli(kaggle_csv, out, "--model", bundle_dir) == 2
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["beats.csv", "pred.csv"]


def test_parquet_with_a_bad_row_reports_its_number(tmp_path, beats, bundle_dir, capsys):
    broken = beats.copy()
    broken.loc[41, "s100"] = np.inf
    broken.to_parquet(tmp_path / "in.parquet", index=False)
    assert cli(tmp_path / "in.parquet", tmp_path / "out.parquet", "--model", bundle_dir) == 2
    assert "row 42: s100: not a finite number" in capsys.readouterr().err
    assert not (tmp_path / "out.parquet").exists()


def test_missing_bundle_stops_the_batch(tmp_path, kaggle_csv, capsys):
    assert cli(kaggle_csv, tmp_path / "out.csv", "--model", tmp_path / "no-bundle") == 2
    assert "does not exist" in capsys.readouterr().err
