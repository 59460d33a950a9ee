"""The batch CLI checks a recording's header against its data before scoring: a sampling rate the
service would refuse, a length or header size the file's bytes do not bear out, a truncated file.
Each is refused with one line naming the file (exit 2), not scored at a wrong rate or offset."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import wfdb

from tests.api.conftest import server_env
from tests.api.test_batch_stream import write_edf
from tests.api.test_batch_strict import batch, refused
from tests.conftest import FIXTURE_MIRROR, ROOT

RECORD = "232"
EDF_SECONDS = 60
# the EDF header's fixed fields (EDF specification): bytes in the header, data records, record duration
HEADER_BYTES, NUM_RECORDS, RECORD_DURATION = slice(184, 192), slice(236, 244), slice(244, 252)


@pytest.fixture(scope="module")
def edf_excerpt(tmp_path_factory) -> Path:
    """The first minute of a fixture record as EDF: two signals at 360 Hz in 1-s data records."""
    path = tmp_path_factory.mktemp("edf") / "excerpt.edf"
    rec = wfdb.rdrecord(str(FIXTURE_MIRROR / RECORD), sampto=EDF_SECONDS * 360, physical=False)
    digital = rec.d_signal - np.asarray(rec.baseline)[None, :]
    signal = digital / np.asarray(rec.adc_gain)[None, :]
    write_edf(path, signal, rec.fs, rec.sig_name, rec.units, digital, rec.adc_gain[0])
    return path


@pytest.fixture
def record(tmp_path) -> Path:
    """A fixture record copied where a test may damage it."""
    directory = tmp_path / "record"
    directory.mkdir()
    for ext in ("hea", "dat", "atr"):
        shutil.copy(FIXTURE_MIRROR / f"{RECORD}.{ext}", directory)
    return directory / RECORD


def set_record_line(record: Path, fs: str | None = None, length: str | None = None) -> None:
    header = record.with_name(record.name + ".hea")
    lines = header.read_text().splitlines()
    name, n_sig, rate, sig_len = lines[0].split()
    lines[0] = f"{name} {n_sig} {rate if fs is None else fs} {sig_len if length is None else length}"
    header.write_text("\n".join(lines) + "\n")


def set_field(path: Path, field: slice, value: str) -> None:
    data = bytearray(path.read_bytes())
    data[field] = value.ljust(field.stop - field.start).encode("ascii")
    path.write_bytes(bytes(data))


def test_intact_copies_score(record, edf_excerpt, tmp_path, bundle_dir):
    """The excerpts the other tests damage are scored as they are."""
    for source, out in ((record, tmp_path / "wfdb.csv"), (edf_excerpt, tmp_path / "edf.csv")):
        result = batch(source, out, "--model", bundle_dir)
        assert result.returncode == 0, result.stderr
        assert out.is_file()


RATES = [  # the header's rate, the one line expected, the R peaks the run would use
    ("-360", "the sampling rate -360 Hz is outside the accepted 100-1000 Hz", "detect"),
    ("-360", "the sampling rate -360 Hz is outside the accepted 100-1000 Hz", "annotations"),
    ("0", "the sampling rate 0 Hz is outside the accepted 100-1000 Hz", "detect"),
    ("36000", "the sampling rate 36000 Hz is outside the accepted 100-1000 Hz", "detect"),
    ("nan", "the sampling rate nan Hz is outside the accepted 100-1000 Hz", "detect"),
    ("fast", "the sampling rate 'fast' is not a number", "detect"),
    ("3.6e2", "the header's sampling rate '3.6e2' is read by wfdb as 3.6 Hz", "annotations"),
]


@pytest.mark.parametrize("fs, expected, peaks", RATES, ids=[f"{fs} {peaks}" for fs, _, peaks in RATES])
def test_a_wfdb_sampling_rate_out_of_range_is_refused(record, tmp_path, bundle_dir, fs, expected, peaks):
    set_record_line(record, fs=fs)
    out = tmp_path / "out.csv"
    refused(batch(record, out, "--model", bundle_dir, "--peaks", peaks), f"record {record}: {expected}")
    assert not out.exists()


def test_the_accepted_rates_are_the_services_settings(record, tmp_path, bundle_dir):
    out = tmp_path / "out.csv"
    result = subprocess.run(
        [sys.executable, "-m", "ecgbeats.serving.batch", str(record), str(out), "--model", str(bundle_dir),
         "--no-progress"],
        cwd=ROOT, env=server_env(min_fs=400), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    refused(result, f"record {record}: the sampling rate 360 Hz is outside the accepted 400-1000 Hz")
    assert not out.exists()


WFDB_DAMAGE = [
    ("cut", "232.dat holds 32400 samples per signal, its header declares 64800: the file is truncated"),
    ("longer header", "232.dat holds 64800 samples per signal, its header declares 129600: the file is truncated"),
    ("shorter header", "232.dat holds 64800 samples per signal, more than the 32400 its header declares"),
    ("no data", "its data file 232.dat is missing"),
]


@pytest.mark.parametrize("damage, expected", WFDB_DAMAGE, ids=[damage for damage, _ in WFDB_DAMAGE])
def test_a_wfdb_length_the_data_does_not_bear_out_is_refused(record, tmp_path, bundle_dir, damage, expected):
    data = record.with_name(record.name + ".dat")
    if damage == "cut":
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    elif damage == "no data":
        data.unlink()
    else:
        set_record_line(record, length="129600" if damage == "longer header" else "32400")
    out = tmp_path / "out.csv"
    refused(batch(record, out, "--model", bundle_dir), f"record {record}: {expected}")
    assert not out.exists()


RECORD_BYTES = 2 * 2 * 360  # two signals of 360 two-byte samples
CUT = 30 * RECORD_BYTES + 100  # a copy stopped in the middle of a data record
TRUNCATED = f"{RECORD_BYTES} bytes: the file is truncated"
LONGER = f"{RECORD_BYTES} bytes: there is more data than it declares"
EDF_DAMAGE = [
    ("header bytes", "the header says it is 9999 bytes long, but 2 signal(s) make it 768"),
    ("cut", f"{CUT} bytes of data, its header declares 60 data records of {TRUNCATED}"),
    ("more records", f"{60 * RECORD_BYTES} bytes of data, its header declares 120 data records of {TRUNCATED}"),
    ("unknown count", f"{CUT} bytes of data, not a whole number of data records of {TRUNCATED}"),
    ("appended", f"{61 * RECORD_BYTES} bytes of data, its header declares 60 data records of {LONGER}"),
    ("slow rate", "the sampling rate 3.6 Hz is outside the accepted 100-1000 Hz"),
    ("no duration", "the data record duration 0 s is not a positive number"),
]


@pytest.mark.parametrize("damage, expected", EDF_DAMAGE, ids=[damage for damage, _ in EDF_DAMAGE])
def test_an_edf_header_the_data_does_not_bear_out_is_refused(edf_excerpt, tmp_path, bundle_dir, damage, expected):
    path = tmp_path / "damaged.edf"
    data = edf_excerpt.read_bytes()
    if damage in ("cut", "unknown count"):
        data = data[: 768 + CUT]
    elif damage == "appended":
        data += bytes(RECORD_BYTES)
    path.write_bytes(data)
    if damage == "header bytes":
        set_field(path, HEADER_BYTES, "9999")
    elif damage == "more records":
        set_field(path, NUM_RECORDS, "120")
    elif damage == "unknown count":  # -1: a recording still being written (EDF+)
        set_field(path, NUM_RECORDS, "-1")
    elif damage == "slow rate":
        set_field(path, RECORD_DURATION, "100")
    elif damage == "no duration":
        set_field(path, RECORD_DURATION, "0")
    out = tmp_path / "out.csv"
    refused(batch(path, out, "--model", bundle_dir), f"{path}: {expected}")
    assert not out.exists()
