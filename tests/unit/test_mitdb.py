from __future__ import annotations

import functools
import http.server
import socket
import threading
import time
from pathlib import Path

import pytest

from ecgbeats.data.mitdb import (
    DataIntegrityError,
    FetchError,
    fetch_mitdb,
    parse_manifest,
    sha256_file,
    verify_directory,
)
from tests.conftest import FIXTURE_MIRROR, FIXTURE_RECORDS


def test_mirror_copy_is_verified_and_complete(tmp_path, fixture_manifest_sha256):
    dest = tmp_path / "raw"
    records = fetch_mitdb(dest, mirror=FIXTURE_MIRROR, manifest_sha256=fixture_manifest_sha256, progress=False)
    assert records == FIXTURE_RECORDS
    assert verify_directory(dest) == FIXTURE_RECORDS
    for name in ("RECORDS", "SHA256SUMS.txt", "208.dat", "208.atr", "208.hea"):
        assert (dest / name).read_bytes() == (FIXTURE_MIRROR / name).read_bytes()


@pytest.mark.parametrize("damage", ["corrupt", "truncate", "delete"])
def test_damaged_file_names_file_and_hashes_and_leaves_nothing(tmp_path, mirror, damage):
    target = mirror / "213.dat"
    expected = parse_manifest((mirror / "SHA256SUMS.txt").read_text())["213.dat"]
    data = target.read_bytes()
    if damage == "corrupt":
        target.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    elif damage == "truncate":
        target.write_bytes(data[: len(data) // 2])
    else:
        target.unlink()
    dest = tmp_path / "raw"
    with pytest.raises(DataIntegrityError) as err:
        fetch_mitdb(dest, mirror=mirror, progress=False)
    message = str(err.value)
    assert "213.dat" in message and expected in message
    if damage != "delete":
        assert sha256_file(target) in message
    else:
        assert "missing" in message
    assert not dest.exists()
    assert not any(p.name.startswith(".raw") for p in tmp_path.iterdir()), "temporary directory left behind"


def test_failed_fetch_keeps_previous_good_copy(tmp_path, mirror):
    dest = tmp_path / "raw"
    fetch_mitdb(dest, mirror=mirror, progress=False)
    before = sha256_file(dest / "124.dat")
    (mirror / "124.dat").write_bytes(b"garbage")
    with pytest.raises(DataIntegrityError):
        fetch_mitdb(dest, mirror=mirror, progress=False)
    assert sha256_file(dest / "124.dat") == before


def test_pinned_manifest_hash_rejects_swapped_checksums(tmp_path, mirror):
    with pytest.raises(DataIntegrityError, match="SHA256SUMS.txt: checksum mismatch"):
        fetch_mitdb(tmp_path / "raw", mirror=mirror, manifest_sha256="0" * 64, progress=False)


def test_mirror_that_is_not_a_directory_says_so(tmp_path):
    with pytest.raises(FetchError, match="MITDB_MIRROR=.*is not a directory"):
        fetch_mitdb(tmp_path / "raw", mirror=tmp_path / "nowhere", progress=False)


@pytest.fixture
def http_mirror(mirror):
    """A real HTTP server on loopback serving a copy of the fixture mirror."""
    handler = functools.partial(QuietHandler, directory=str(mirror))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/mitdb/1.0.0/", mirror
    server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def translate_path(self, path: str) -> str:
        return super().translate_path(path.replace("/mitdb/1.0.0", "", 1))

    def log_message(self, *args) -> None:
        pass


def test_download_over_http(tmp_path, http_mirror, fixture_manifest_sha256):
    url, _ = http_mirror
    records = fetch_mitdb(tmp_path / "raw", base_url=url, manifest_sha256=fixture_manifest_sha256, progress=False)
    assert records == FIXTURE_RECORDS
    assert verify_directory(tmp_path / "raw") == FIXTURE_RECORDS


def test_http_missing_file_is_an_error_naming_the_url(tmp_path, http_mirror):
    url, mirror = http_mirror
    (mirror / "232.atr").unlink()
    with pytest.raises(FetchError, match=r"232\.atr: HTTP 404"):
        fetch_mitdb(tmp_path / "raw", base_url=url, progress=False)
    assert not (tmp_path / "raw").exists()


def test_offline_fails_fast_and_explains_the_mirror(tmp_path):
    with socket.socket() as sock:  # a port with nothing listening: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(FetchError, match="MITDB_MIRROR") as err:
        fetch_mitdb(tmp_path / "raw", base_url=f"http://127.0.0.1:{port}/", timeout=5, progress=False)
    assert time.monotonic() - start < 5
    assert "cannot download" in str(err.value)
    assert not (tmp_path / "raw").exists()


def test_manifest_line_that_is_not_a_checksum_is_named(tmp_path):
    with pytest.raises(DataIntegrityError, match="line 2"):
        parse_manifest(f"{'a' * 64} 100.dat\nnot a checksum line\n")


def test_download_stage_reports_failure_without_traceback(tmp_path, mirror, capsys, monkeypatch):
    from stages import download

    (mirror / "124.hea").write_text("tampered\n")
    params = tmp_path / "params.yaml"
    params.write_text("download:\n  base_url: http://127.0.0.1:9/\n  sha256sums: null\n  timeout: 5\n")
    monkeypatch.setenv("MITDB_MIRROR", str(mirror))
    assert download.main(["--out", str(tmp_path / "raw"), "--params", str(params)]) == 1
    assert "124.hea: checksum mismatch" in capsys.readouterr().err
    assert not Path(tmp_path / "raw").exists()
