"""The committed pipeline outputs: every declared plot renders and every declared metrics file exists."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from tests.conftest import ROOT


def test_every_declared_plot_renders_without_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "dvc", "plots", "show", "--json", "-o", str(tmp_path / "rendered")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert not shown.get("errors"), shown.get("errors")
    assert len(shown["data"]) >= 20


def test_every_declared_metrics_file_is_committed_json():
    declared = yaml.safe_load((ROOT / "dvc.yaml").read_text())["metrics"]
    for path in declared:
        assert isinstance(json.loads((ROOT / path).read_text()), dict), path
