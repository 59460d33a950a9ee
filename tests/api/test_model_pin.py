"""One verification rule at every entry point: the pinned digest (the full sha256 of the manifest) is
checked before anything parses the model, the manifest format is strict, and a refusal is one line and
exit code 2 from the service, the batch CLI and the drift CLI alike."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ecgbeats.modelling.bundle import MANIFEST_FILE, MODEL_FILE, BundleError, bundle_digest, load_bundle
from tests.api.conftest import free_port, server_env
from tests.conftest import FIXTURE_MIRROR, ROOT


def rewrite(bundle: Path, dest: Path, model_text: str) -> Path:
    """A copy of ``bundle`` with another model.txt and a manifest regenerated to match: what an attacker
    or a botched release with write access to the bundle produces. Only a pin tells it apart."""
    shutil.copytree(bundle, dest)
    (dest / MODEL_FILE).write_text(model_text)
    lines = []
    for line in (dest / MANIFEST_FILE).read_text().splitlines():
        name = line.split("  ", 1)[1]
        lines.append(f"{hashlib.sha256((dest / name).read_bytes()).hexdigest()}  {name}")
    (dest / MANIFEST_FILE).write_text("\n".join(lines) + "\n")
    return dest


@pytest.fixture
def pinned(bundle_dir) -> str:
    return bundle_digest(bundle_dir)


@pytest.fixture
def malformed(bundle_dir, tmp_path) -> Path:
    return rewrite(bundle_dir, tmp_path / "malformed", "tree\nversion=v4\nnum_class=5\nTree=0\nnum_leaves=oops\n")


@pytest.fixture
def retrained(bundle_dir, tmp_path) -> Path:
    """A valid model, not the released one: every leaf value changed (each digit shifted, so every line and
    tree keeps its length and the header's tree sizes stay right)."""
    shift = str.maketrans("0123456789", "1234567890")
    text = re.sub(
        r"^leaf_value=.*$", lambda m: m[0].translate(shift), (bundle_dir / MODEL_FILE).read_text(), flags=re.M
    )
    return rewrite(bundle_dir, tmp_path / "retrained", text)


def run(args: list[str], **settings: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=server_env(**settings), capture_output=True, text=True, timeout=120
    )


def assert_one_line_refusal(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr[-2000:]
    assert expected in lines[0]
    assert "Traceback" not in result.stderr and "[LightGBM] [Fatal]" not in result.stderr


def test_the_pin_is_checked_before_lightgbm_parses_the_model(malformed, pinned):
    with pytest.raises(BundleError, match="is not the pinned"):
        load_bundle(malformed, pinned)
    # without a pin the manifest matches, and the parse failure is a BundleError, not a crash
    with pytest.raises(BundleError, match="cannot be parsed"):
        load_bundle(malformed)


def test_only_the_pin_tells_a_retrained_bundle_apart(bundle_dir, retrained, pinned):
    released, other = load_bundle(bundle_dir), load_bundle(retrained)  # both pass every check of their own
    assert other.booster.model_to_string() != released.booster.model_to_string()
    with pytest.raises(BundleError, match="is not the pinned"):
        load_bundle(retrained, pinned)


@pytest.mark.parametrize("pin", ["0" * 8, "0" * 63, "Z" * 64, " " + "0" * 63])
def test_only_a_full_digest_is_a_pin(bundle_dir, pin):
    with pytest.raises(BundleError, match="not a full sha256"):
        load_bundle(bundle_dir, pin)


def test_the_right_pin_loads(bundle_dir, pinned):
    assert load_bundle(bundle_dir, pinned).path == bundle_dir


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda text: text + "# released 2026-12-01\n", "line 3 is not"),
        (lambda text: text + text.splitlines()[0] + "\n", "twice"),
        (lambda text: text.rstrip("\n"), "does not end with a newline"),
        (lambda text: text.replace("  ", " ", 1), "line 1 is not"),
        (lambda text: text + "0" * 64 + "  notes.txt\n", "not a bundle file"),
    ],
)
def test_the_manifest_format_is_strict(bundle_dir, tmp_path, change, message):
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    (copy / MANIFEST_FILE).write_text(change((copy / MANIFEST_FILE).read_text()))
    with pytest.raises(BundleError, match=message):
        load_bundle(copy)


def test_the_server_refuses_a_malformed_model_under_pin_in_one_line(malformed, pinned):
    result = run(["-m", "ecgbeats.serving", "--port", str(free_port())], model_dir=malformed, model_digest=pinned)
    assert_one_line_refusal(result, "is not the pinned ECGBEATS_MODEL_DIGEST")


def test_the_server_refuses_a_short_pin_in_one_line(bundle_dir, pinned):
    result = run(["-m", "ecgbeats.serving", "--port", str(free_port())], model_dir=bundle_dir, model_digest=pinned[:8])
    assert_one_line_refusal(result, "not a full sha256")


def test_the_batch_cli_honours_the_pin(retrained, pinned, tmp_path):
    out = tmp_path / "scored.csv"
    rows = FIXTURE_MIRROR.parent / "beats.csv"  # not needed: the bundle is refused before any input is read
    result = run(["-m", "ecgbeats.serving.batch", str(rows), str(out), "--model", str(retrained)], model_digest=pinned)
    assert_one_line_refusal(result, "is not the pinned ECGBEATS_MODEL_DIGEST")
    assert not out.exists() and not list(tmp_path.glob(".*"))


def test_the_drift_cli_honours_the_pin(retrained, pinned, tmp_path):
    out = tmp_path / "drift.json"
    result = run(
        ["-m", "ecgbeats.serving.drift_cli", str(tmp_path / "beats.csv"), "--model", str(retrained), "--out", str(out)],
        model_digest=pinned,
    )
    assert_one_line_refusal(result, "is not the pinned ECGBEATS_MODEL_DIGEST")
    assert not out.exists()
