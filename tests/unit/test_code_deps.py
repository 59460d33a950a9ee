"""Every pipeline stage declares the project code it runs: the modules its command imports, directly or not.

A missing code dep lets ``dvc.lock`` say "up to date" over results that the current code would not give.
The stages come from DVC itself (both pipelines, every matrix and foreach item resolved); the imports
from the modules' source (every ``import`` statement, also inside functions).
"""

from __future__ import annotations

import ast
import shlex
from functools import cache
from pathlib import Path

import pytest
from dvc.repo import Repo

from tests.conftest import ROOT

PROJECT_PACKAGES = ("ecgbeats", "stages", "studies")
PIPELINES = ("dvc.yaml", "studies/dvc.yaml")


def module_file(name: str) -> Path | None:
    """The file of a project module or package, if ``name`` is one."""
    if name.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def direct_imports(path: Path) -> frozenset[Path]:
    found: set[Path] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pkg import mod` imports pkg.mod when that is a module, else a name of pkg
            names = [f"{node.module}.{alias.name}" if module_file(f"{node.module}.{alias.name}") else node.module
                     for alias in node.names]  # fmt: skip
        found.update(f for f in map(module_file, names) if f is not None)
    return frozenset(found)


def closure(path: Path) -> set[Path]:
    seen, todo = set(), [path]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(direct_imports(current))
    return seen


def pipeline_stages() -> list[tuple[str, str, list[str]]]:
    """(name, cmd, deps relative to the root) of every stage of both pipelines."""
    repo = Repo(str(ROOT))
    try:
        out = []
        for pipeline in PIPELINES:
            for stage in repo.stage.collect(str(ROOT / pipeline)):
                deps = [str(Path(dep.fs_path).relative_to(ROOT)) for dep in stage.deps]
                out.append((f"{pipeline}:{stage.name}", stage.cmd, deps))
        return out
    finally:
        repo.close()


STAGES = pipeline_stages()


def test_both_pipelines_are_found():
    names = {name for name, _, _ in STAGES}
    assert "dvc.yaml:train@kaggle" in names and "studies/dvc.yaml:eda" in names


@pytest.mark.parametrize(("name", "cmd", "deps"), STAGES, ids=[s[0] for s in STAGES])
def test_stage_declares_every_module_it_imports(name, cmd, deps):
    words = shlex.split(cmd)
    assert words[:2] == ["python", "-m"], f"{name}: a stage runs `python -m <module>`"
    entry = module_file(words[2])
    assert entry is not None, f"{name}: {words[2]} is not a project module"
    covered = [ROOT / d for d in deps]
    missing = sorted(
        str(f.relative_to(ROOT)) for f in closure(entry) if not any(f == d or d in f.parents for d in covered)
    )
    assert not missing, f"{name} imports {missing} but does not list them (or their folder) in its deps"
