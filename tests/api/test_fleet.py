"""A fleet of recordings on a real Dask LocalCluster: one table, per-recording outputs, a failure listed
without stopping the others, and a rerun that scores only what is not done."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from ecgbeats.serving import fleet
from tests.api.test_record_model import record_bundle  # noqa: F401 (fixture: a record bundle on the fixtures)
from tests.conftest import FIXTURE_MIRROR, FIXTURE_RECORDS, ROOT

pytestmark = pytest.mark.slow
GOOD = ["124", "213", "232"]


@pytest.fixture
def recordings_dir(tmp_path):
    """Three fixture records and a fourth whose signal file is cut short."""
    directory = tmp_path / "in"
    directory.mkdir()
    for record in [*GOOD, "208"]:
        for ext in ("hea", "dat", "atr"):
            shutil.copy(FIXTURE_MIRROR / f"{record}.{ext}", directory / f"{record}.{ext}")
    broken = directory / "208.dat"
    broken.write_bytes(broken.read_bytes()[:1000])
    return directory


def test_a_fleet_scores_each_recording_lists_the_failure_and_resumes(record_bundle, recordings_dir, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    args = [str(recordings_dir), str(out), "--model", str(record_bundle), "--workers", "2", "--no-progress"]
    assert fleet.main(args) == 1  # one recording failed
    table = pd.read_csv(out / "fleet.csv", dtype={"recording": str})
    assert table["recording"].tolist() == ["124", "208", "213", "232"]
    assert table.set_index("recording")["status"].to_dict() == {"124": "done", "208": "failed", "213": "done",
                                                                "232": "done"}  # fmt: skip
    reason = table.set_index("recording").at["208", "reason"]
    assert reason.endswith(
        "/208: 208.dat holds 333 samples per signal, its header declares 64800: the file is truncated"
    )
    for record in GOOD:
        found = json.loads((out / record / "findings.json").read_text())
        beats = pd.read_parquet(out / record / "beats.parquet")
        row = table.set_index("recording").loc[record]
        assert row["beats"] == found["beats"]["total"] == beats["time_s"].nunique() > 100  # a beat detected twice once
        assert row["V"] == found["ventricular"]["beats"]
        assert (out / record / "report.html").stat().st_size > 10_000
    assert not (out / "208").exists() or not any((out / "208").iterdir())  # nothing half-written
    # a rerun scores only what is not done: a recording whose outputs were lost part-way is redone
    (out / "213" / fleet.DONE).unlink()
    stamps = {r: (out / r / "beats.parquet").stat().st_mtime_ns for r in GOOD}
    assert fleet.main(args) == 1
    again = pd.read_csv(out / "fleet.csv", dtype={"recording": str}).set_index("recording")
    assert again.loc[["124", "232"], "status"].tolist() == ["done (earlier run)"] * 2
    assert again.at["213", "status"] == "done"
    assert (out / "124" / "beats.parquet").stat().st_mtime_ns == stamps["124"]
    assert (out / "213" / "beats.parquet").stat().st_mtime_ns != stamps["213"]


def test_a_manifest_names_the_recordings_and_bad_inputs_stop_early(record_bundle, recordings_dir, tmp_path, capsys):  # noqa: F811
    manifest = tmp_path / "list.txt"
    manifest.write_text("# two of them\nin/213.hea\nin/232\n")
    assert [r.name for r in fleet.recordings(manifest)] == ["213", "232"]
    manifest.write_text("in/999\n")
    with pytest.raises(fleet.FleetInputError, match="line 1: in/999"):
        fleet.recordings(manifest)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert fleet.main([str(empty), str(tmp_path / "o"), "--model", str(record_bundle), "--no-progress"]) == 2
    assert "no WFDB record" in capsys.readouterr().err


def test_a_worker_killed_mid_run_loses_no_finished_recording(record_bundle, tmp_path):  # noqa: F811
    import subprocess
    import sys
    import time

    import psutil

    directory = tmp_path / "in"
    directory.mkdir()
    names = []
    for k in range(3):  # the fixture records three times over, under other names
        for record in FIXTURE_RECORDS:
            name = f"r{k}-{record}"
            for ext in ("dat", "atr"):
                shutil.copy(FIXTURE_MIRROR / f"{record}.{ext}", directory / f"{name}.{ext}")
            header = (FIXTURE_MIRROR / f"{record}.hea").read_text().replace(f"{record}.dat", f"{name}.dat")
            (directory / f"{name}.hea").write_text(header.replace(record, name, 1))
            names.append(name)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ecgbeats.serving.fleet", str(directory), str(out), "--model", str(record_bundle),
         "--workers", "2", "--no-progress"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob(f"*/{fleet.DONE}")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(out.glob(f"*/{fleet.DONE}")), "no recording finished"
        workers = [
            p for p in psutil.Process(proc.pid).children(recursive=True) if "spawn_main" in " ".join(p.cmdline())
        ]  # the Dask workers, not multiprocessing's tracker
        assert len(workers) == 2
        workers[0].kill()  # as an out-of-memory kill would: no clean-up
        assert proc.wait(timeout=300) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    table = pd.read_csv(out / "fleet.csv", dtype={"recording": str})
    assert sorted(table["recording"]) == sorted(names) and set(table["status"]) == {"done"}
    assert all((out / name / fleet.DONE).is_file() for name in names)
    assert not list(out.rglob("*.tmp"))  # no half-written file left behind
