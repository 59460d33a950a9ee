from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ecgbeats.data.mitdb import sha256_file

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_MIRROR = ROOT / "tests" / "fixtures" / "mitdb"
FIXTURE_RECORDS = (FIXTURE_MIRROR / "RECORDS").read_text().split()


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    """A writable copy of the fixture mirror, for tests that damage files."""
    copy = tmp_path / "mirror"
    shutil.copytree(FIXTURE_MIRROR, copy)
    return copy


@pytest.fixture(scope="session")
def fixture_manifest_sha256() -> str:
    return sha256_file(FIXTURE_MIRROR / "SHA256SUMS.txt")


@pytest.fixture(scope="session")
def fixture_beats():
    from ecgbeats.data.dataset import build_beat_table

    return build_beat_table(FIXTURE_MIRROR, FIXTURE_RECORDS, progress=False)


@pytest.fixture(scope="session")
def full_mirror() -> Path:
    """The full MIT-BIH mirror named by MITDB_MIRROR (CI sets it); skipped without one."""
    value = os.environ.get("MITDB_MIRROR")
    if not value or not (Path(value) / "RECORDS").is_file():
        pytest.skip("MITDB_MIRROR does not name a full MIT-BIH mirror")
    return Path(value)
