"""A bundle whose files were rewritten behind a regenerated manifest (no pin to tell it apart) is refused
by every entry point in one line with exit code 2, whatever was written: a model LightGBM would abort
the process on, junk or wrongly typed JSON, or a manifest not in the form the writer produces."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ecgbeats.modelling.bundle import MANIFEST_FILE, META_FILE, MODEL_FILE, REFERENCE_FILE
from tests.api.conftest import free_port, server_env
from tests.conftest import ROOT

TIMEOUT = 90  # a bundle that is not refused starts a server that never exits: the timeout fails the test


def regenerate_manifest(bundle: Path) -> None:
    """What someone with write access to the bundle does after editing it: a manifest that matches."""
    names = [line.split("  ", 1)[1] for line in (bundle / MANIFEST_FILE).read_text().splitlines()]
    (bundle / MANIFEST_FILE).write_text(
        "".join(f"{hashlib.sha256((bundle / name).read_bytes()).hexdigest()}  {name}\n" for name in names)
    )


def edit_model(change: Callable[[str], str]) -> Callable[[Path], None]:
    def edit(bundle: Path) -> None:
        (bundle / MODEL_FILE).write_text(change((bundle / MODEL_FILE).read_text()))
        regenerate_manifest(bundle)

    return edit


def replace_file(name: str, data: bytes) -> Callable[[Path], None]:
    def edit(bundle: Path) -> None:
        (bundle / name).write_bytes(data)
        regenerate_manifest(bundle)

    return edit


def edit_json(name: str, change: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(bundle: Path) -> None:
        value = json.loads((bundle / name).read_text())
        change(value)
        (bundle / name).write_text(json.dumps(value))
        regenerate_manifest(bundle)

    return edit


def crlf_manifest(bundle: Path) -> None:
    (bundle / MANIFEST_FILE).write_bytes((bundle / MANIFEST_FILE).read_bytes().replace(b"\n", b"\r\n"))


def zero_leaves(text: str) -> str:
    """Every leaf value 0, each line keeping its count: the trees' byte sizes in the header go stale."""
    return re.sub(r"^leaf_value=.*$", lambda m: "leaf_value=" + " ".join("0" for _ in m[0].split()), text, flags=re.M)


JUNK = bytes(range(256)) * 8

CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "leaf_value_one_too_many": (edit_model(lambda t: t.replace("leaf_value=", "leaf_value=0 ", 1)), "leaf_value"),
    "leaf_value_not_a_number": (edit_model(lambda t: t.replace("leaf_value=", "leaf_value=abc", 1)), "leaf_value"),
    "leaf_values_zeroed": (edit_model(zero_leaves), "tree_sizes"),
    "model_binary_junk": (replace_file(MODEL_FILE, JUNK), MODEL_FILE),
    "meta_binary_junk": (replace_file(META_FILE, JUNK), f"{META_FILE} is not JSON"),
    "meta_bad_json": (replace_file(META_FILE, b'{"format_version": 2,'), f"{META_FILE} is not JSON"),
    "meta_not_an_object": (replace_file(META_FILE, b"[2]\n"), "not a JSON object"),
    "meta_class_names_a_string": (edit_json(META_FILE, lambda m: m.update(class_names="NSVFQ")), "class_names"),
    "meta_columns_numbers": (edit_json(META_FILE, lambda m: m["features"].update(columns=[1, 2])), "columns"),
    "reference_binary_junk": (replace_file(REFERENCE_FILE, JUNK), f"{REFERENCE_FILE} is not JSON"),
    "reference_features_a_list": (edit_json(REFERENCE_FILE, lambda r: r.update(features=[])), REFERENCE_FILE),
    "reference_class_mix_missing": (edit_json(REFERENCE_FILE, lambda r: r.pop("class_mix")), "class_mix"),
    "manifest_crlf": (crlf_manifest, "CRLF"),
}


def command(entry: str, bundle: Path, tmp_path: Path) -> list[str]:
    beats = tmp_path / "beats.csv"  # never read: the bundle is refused first
    if entry == "service":
        return [sys.executable, "-m", "ecgbeats.serving", "--port", str(free_port())]
    if entry == "batch":
        return [sys.executable, "-m", "ecgbeats.serving.batch", str(beats), str(tmp_path / "out.csv"),
                "--model", str(bundle)]  # fmt: skip
    return [sys.executable, "-m", "ecgbeats.serving.drift_cli", str(beats), "--model", str(bundle),
            "--out", str(tmp_path / "drift.json")]  # fmt: skip


# every case against the service, whose start checks the bundle without loading it; the CLIs load it with
# load_bundle (every case of which tests/model/test_bundle.py covers in-process): one case per file here
CLI_CASES = ["leaf_value_one_too_many", "meta_class_names_a_string", "reference_binary_junk", "manifest_crlf"]
RUNS = [(case, "service") for case in CASES] + [(case, cli) for cli in ("batch", "drift") for case in CLI_CASES]


@pytest.mark.parametrize(("case", "entry"), RUNS)
def test_a_rewritten_bundle_is_refused_in_one_line(drift_bundle, tmp_path, case, entry):
    edit, expected = CASES[case]
    bundle = tmp_path / "bundle"
    shutil.copytree(drift_bundle, bundle)
    edit(bundle)
    result = subprocess.run(
        command(entry, bundle, tmp_path), cwd=ROOT, env=server_env(model_dir=bundle),
        capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr[-3000:]
    assert expected in lines[0]
    assert "model bundle" in lines[0]
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "drift.json").exists()
