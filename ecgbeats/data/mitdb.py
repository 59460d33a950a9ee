"""Fetch the MIT-BIH Arrhythmia Database from PhysioNet or a local mirror, verified file by file.

Every file is checked against PhysioNet's ``SHA256SUMS.txt``; the destination directory only
appears once everything has been fetched and verified, so a failed run leaves nothing partial.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from tqdm import tqdm

from ecgbeats.io import atomic_dir

log = logging.getLogger(__name__)

PHYSIONET_URL = "https://physionet.org/files/mitdb/1.0.0/"
MANIFEST = "SHA256SUMS.txt"
RECORD_LIST = "RECORDS"
RECORD_EXTENSIONS = (".hea", ".dat", ".atr")
MIRROR_ENV = "MITDB_MIRROR"
_CHUNK = 1 << 20


class DataIntegrityError(RuntimeError):
    """A fetched file is missing, truncated or altered."""


class FetchError(RuntimeError):
    """The source (PhysioNet or a mirror) could not deliver a file."""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def parse_manifest(text: str, source: str = MANIFEST) -> dict[str, str]:
    """Parse ``sha256sum`` output (``<hex>  <name>`` per line) into ``{name: hex}``."""
    manifest: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or len(parts[0]) != 64:
            raise DataIntegrityError(f"{source} line {number} is not '<sha256> <file>': {line!r}")
        manifest[parts[1].strip().lstrip("*")] = parts[0].lower()
    return manifest


def record_files(records: Iterable[str]) -> list[str]:
    return [f"{record}{ext}" for record in records for ext in RECORD_EXTENSIONS]


def verify_file(path: Path, name: str, manifest: dict[str, str]) -> None:
    """Raise DataIntegrityError naming the file, its expected and its actual hash."""
    if name not in manifest:
        raise DataIntegrityError(f"{name}: not listed in {MANIFEST}, cannot verify it")
    expected = manifest[name]
    if not path.is_file():
        raise DataIntegrityError(f"{name}: missing (expected sha256 {expected})")
    actual = sha256_file(path)
    if actual != expected:
        size = path.stat().st_size
        raise DataIntegrityError(
            f"{name}: checksum mismatch, expected sha256 {expected}, got {actual} "
            f"({size} bytes; the file is truncated or altered)"
        )


def verify_manifest(path: Path, manifest_sha256: str) -> None:
    """``SHA256SUMS.txt`` itself against its pinned hash, so data and checksums cannot be swapped together."""
    if not path.is_file():
        raise DataIntegrityError(f"{MANIFEST}: missing from {path.parent}")
    actual = sha256_file(path)
    if actual != manifest_sha256.lower():
        raise DataIntegrityError(f"{MANIFEST}: checksum mismatch, expected sha256 {manifest_sha256}, got {actual}")


def verify_directory(directory: str | Path, manifest_sha256: str | None = None) -> list[str]:
    """Verify RECORDS and every record file in an existing directory; return the record names.

    ``manifest_sha256`` pins ``SHA256SUMS.txt`` itself (as :func:`fetch_mitdb` does)."""
    directory = Path(directory)
    if manifest_sha256 is not None:
        verify_manifest(directory / MANIFEST, manifest_sha256)
    if not (directory / MANIFEST).is_file():
        raise DataIntegrityError(f"{MANIFEST}: missing from {directory}")
    manifest = parse_manifest((directory / MANIFEST).read_text(), str(directory / MANIFEST))
    verify_file(directory / RECORD_LIST, RECORD_LIST, manifest)
    records = (directory / RECORD_LIST).read_text().split()
    for name in record_files(records):
        verify_file(directory / name, name, manifest)
    return records


class _Source:
    """Where files come from: a local mirror directory or an HTTP base URL."""

    def __init__(self, mirror: str | Path | None, base_url: str, timeout: float):
        self.mirror = Path(mirror) if mirror else None
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.timeout = timeout
        if self.mirror is not None and not self.mirror.is_dir():
            raise FetchError(
                f"{MIRROR_ENV}={self.mirror} is not a directory; point it at a copy of "
                f"PhysioNet's mitdb/1.0.0 (RECORDS, {MANIFEST}, NNN.hea/.dat/.atr) or unset it "
                f"to download from {PHYSIONET_URL}"
            )

    def describe(self) -> str:
        return f"mirror {self.mirror}" if self.mirror else self.base_url

    def fetch(self, name: str, dest: Path) -> None:
        if self.mirror is not None:
            src = self.mirror / name
            if not src.is_file():
                return  # verification reports it as missing, with the expected hash
            shutil.copyfile(src, dest)
            return
        url = self.base_url + name
        try:
            with (
                urllib.request.urlopen(url, timeout=self.timeout) as response,
                open(dest, "wb") as out,
            ):
                shutil.copyfileobj(response, out, _CHUNK)
        except urllib.error.HTTPError as err:
            raise FetchError(f"{url}: HTTP {err.code} {err.reason}") from err
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise FetchError(
                f"cannot download {url} ({reason}). Without network access, set {MIRROR_ENV} to a "
                f"local copy of PhysioNet's mitdb/1.0.0 (RECORDS, {MANIFEST} and the records' "
                f".hea/.dat/.atr files), e.g. `export {MIRROR_ENV}=/data/mitdb`, and run again"
            ) from err


def fetch_mitdb(
    dest: str | Path,
    *,
    mirror: str | Path | None = None,
    base_url: str = PHYSIONET_URL,
    manifest_sha256: str | None = None,
    timeout: float = 10.0,
    progress: bool = True,
) -> list[str]:
    """Fetch and verify the database into ``dest``; return the record names.

    ``manifest_sha256`` pins ``SHA256SUMS.txt`` itself, so a mirror cannot swap data and
    checksums together. Files go to a temporary directory that replaces ``dest`` only when
    every file has been verified.
    """
    source = _Source(mirror, base_url, timeout)
    log.info("fetching MIT-BIH from %s", source.describe())
    with atomic_dir(dest) as tmp:
        source.fetch(MANIFEST, tmp / MANIFEST)
        if not (tmp / MANIFEST).is_file():
            raise DataIntegrityError(f"{MANIFEST}: missing from {source.describe()}")
        if manifest_sha256 is not None:
            verify_manifest(tmp / MANIFEST, manifest_sha256)
        manifest = parse_manifest((tmp / MANIFEST).read_text())
        source.fetch(RECORD_LIST, tmp / RECORD_LIST)
        verify_file(tmp / RECORD_LIST, RECORD_LIST, manifest)
        records = (tmp / RECORD_LIST).read_text().split()
        if not records:
            raise DataIntegrityError(f"{RECORD_LIST}: lists no records")
        names = record_files(records)
        for name in tqdm(names, desc="mitdb files", unit="file", disable=not progress):
            source.fetch(name, tmp / name)
            verify_file(tmp / name, name, manifest)
    log.info("verified %d records (%d files) in %s", len(records), len(names) + 2, dest)
    return records
