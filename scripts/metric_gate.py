"""Metric regression gate: fail when a guarded metric regresses, a floor is breached or dvc.lock is stale.

Compares the workspace's metrics files with their previous version in git and with the absolute
floors in gate.yaml, checks that gate.yaml's floors only went up, and (with --check-lock) that
dvc.lock matches the committed code, params and dependencies. Prints a markdown report.

The previous version of a file is, by default, the last commit before HEAD that changed it (or
HEAD's version when the workspace copy has uncommitted changes); --base REV compares with REV.

    python scripts/metric_gate.py                      # metrics + floors ratchet
    python scripts/metric_gate.py --check-lock         # and dvc.lock staleness (what `make gate` runs)
    python scripts/metric_gate.py --base origin/main   # compare with another revision

Exit status: 0 passed, 1 a check failed (reasons listed), 2 config or environment error.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from ecgbeats.io import atomic_path
from ecgbeats.operations.gate import (
    GateConfigError,
    Guard,
    accepted_regressions,
    compare,
    downstream_stages,
    floor_ratchet_failures,
    parse_config,
    render_report,
    stages_missing_from_lock,
    stale_stages,
)

log = logging.getLogger("scripts.metric_gate")

PASSED, FAILED, CONFIG_ERROR = 0, 1, 2


# --- git ------------------------------------------------------------------------------------


def git(repo: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False)
    except FileNotFoundError as err:
        raise GateConfigError("git is not installed") from err


def git_text(repo: Path, *args: str) -> str:
    result = git(repo, *args)
    if result.returncode != 0:
        raise GateConfigError(f"git {' '.join(args)}: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout.decode().strip()


def resolve_commit(repo: Path, rev: str) -> str | None:
    result = git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    return result.stdout.decode().strip() if result.returncode == 0 else None


def show_file(repo: Path, rev: str, path: str) -> bytes | None:
    """The file as committed in ``rev``, or None when ``rev`` has no such file."""
    result = git(repo, "show", f"{rev}:./{path}")
    return result.stdout if result.returncode == 0 else None


def last_change(repo: Path, start: str, path: str) -> str | None:
    """The newest commit reachable from ``start`` that changed ``path``."""
    sha = git_text(repo, "log", "-n", "1", "--format=%H", start, "--", path)
    return sha or None


def describe(repo: Path, commit: str) -> str:
    short, _, subject = git_text(repo, "log", "-n", "1", "--format=%h %s", commit).partition(" ")
    return f"{short} ({subject[:60] + '...' if len(subject) > 60 else subject})"


def previous_commit(repo: Path, path: str, base: str | None) -> str | None:
    """The commit holding the version of ``path`` to compare with; None when there is none (new file).

    With ``base``: the last commit up to ``base`` that changed the file. Without: the last commit
    before HEAD that changed it, so that a commit changing the metrics is compared with the version
    before that change; if the workspace copy differs from HEAD's (uncommitted), HEAD's version.
    """
    if base is not None:
        if resolve_commit(repo, base) is None:
            raise GateConfigError(f"--base {base}: no such revision")
        start = base
    elif resolve_commit(repo, "HEAD") is None:
        return None  # no commits yet
    else:
        workspace = repo / path
        committed = show_file(repo, "HEAD", path)
        if committed is None or not workspace.is_file() or workspace.read_bytes() != committed:
            start = "HEAD"
        elif resolve_commit(repo, "HEAD^1") is not None:
            start = "HEAD^1"
        elif git_text(repo, "rev-parse", "--is-shallow-repository") == "true":
            raise GateConfigError("shallow clone: the gate needs history (fetch with depth 0, or pass --base)")
        else:
            return None  # HEAD is the root commit
    commit = last_change(repo, start, path)
    if commit is None or show_file(repo, commit, path) is None:  # never committed, or deleted there
        return None
    return commit


# --- reading --------------------------------------------------------------------------------


def load_current(repo: Path, files: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    data: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for path in files:
        target = repo / path
        if not target.is_file():
            errors[path] = "missing file"
            continue
        try:
            data[path] = json.loads(target.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            errors[path] = f"unreadable file: {err}"
    return data, errors


def load_previous(repo: Path, files: list[str], base: str | None) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    data: dict[str, Any] = {}
    labels: dict[str, str] = {}
    failures: list[str] = []
    for path in files:
        commit = previous_commit(repo, path, base)
        if commit is None:
            labels[path] = "no previous version (new file): floors only"
            continue
        blob = show_file(repo, commit, path)
        assert blob is not None
        try:
            data[path] = json.loads(blob)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            failures.append(f"{path} at {commit[:7]} is not valid JSON: {err}")
            continue
        labels[path] = describe(repo, commit)
    return data, labels, failures


def accepted_in_history(repo: Path, files: list[str], base: str | None) -> set[tuple[str, str]]:
    """Regressions accepted by the commit that introduced each file's committed current version.

    Only a committed, unmodified file can carry an acceptance: an uncommitted change has no
    message yet, and with ``--base`` the comparison spans commits that each speak for themselves.
    """
    if base is not None or resolve_commit(repo, "HEAD") is None:
        return set()
    accepted: set[tuple[str, str]] = set()
    for path in files:
        committed = show_file(repo, "HEAD", path)
        workspace = repo / path
        if committed is None or not workspace.is_file() or workspace.read_bytes() != committed:
            continue
        commit = last_change(repo, "HEAD", path)
        if commit:
            message = git_text(repo, "log", "-n", "1", "--format=%B", commit)
            accepted |= {pair for pair in accepted_regressions(message) if pair[0] == path}
    return accepted


def read_config(path: Path, source: str | None = None) -> list[Guard]:
    try:
        text = path.read_text()
    except OSError as err:
        raise GateConfigError(f"{path}: {err.strerror or err}") from err
    return parse_config_text(text, source or str(path))


def parse_config_text(text: str | bytes, source: str) -> list[Guard]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise GateConfigError(f"{source}: invalid YAML: {err}") from err
    return parse_config(data, source)


def declared_metrics(repo: Path, dvc_yaml: str) -> list[str]:
    """The metrics files listed at the top level of dvc.yaml (empty if there is no dvc.yaml)."""
    path = repo / dvc_yaml
    if not path.is_file():
        return []
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise GateConfigError(f"{dvc_yaml}: invalid YAML: {err}") from err
    return [entry for entry in data.get("metrics") or [] if isinstance(entry, str)]


# --- checks ---------------------------------------------------------------------------------


def check_floors_ratchet(repo: Path, config: Path, guards: list[Guard], base: str | None) -> tuple[list[str], str]:
    """Failures if gate.yaml's floors went down versus its previous committed version, and a note."""
    try:
        relative = config.resolve().relative_to(repo.resolve()).as_posix()
    except ValueError:
        return [], f"floors ratchet: {config} is outside the repository, not checked"
    commit = previous_commit(repo, relative, base)
    if commit is None:
        return [], f"floors ratchet: no previous {relative} in git, nothing to compare"
    blob = show_file(repo, commit, relative)
    try:
        previous = parse_config_text(blob or b"", f"{relative} at {commit[:7]}")
    except GateConfigError as err:
        log.warning("previous gate config is unusable, floors ratchet not checked: %s", err)
        return [], f"floors ratchet: previous {relative} is unusable ({err}), not checked"
    failures = floor_ratchet_failures(previous, guards)
    state = "floors went down" if failures else "ok, no floor went down"
    return failures, f"floors ratchet against {relative} at {describe(repo, commit)}: {state}"


def dvc(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, capture_output=True, text=True, check=False)


def check_lock(repo: Path, pipeline: str = "dvc.yaml") -> tuple[list[str], str]:
    """Failures if a pipeline's lock file is stale for the committed code, params or dependencies, and a note.

    Data outputs are absent in CI (only metrics and plots are in git), so this asks
    ``dvc repro --dry --allow-missing --keep-going``: stages whose only change is missing data are
    skipped; any other stage would run (or, lacking its input data, fails to) and is stale. Stages
    of dvc.yaml without a dvc.lock entry are stale too (``--allow-missing`` skips some of them).
    """
    lock_name = str(Path(pipeline).with_suffix(".lock"))
    lock_path = repo / lock_name
    if not lock_path.is_file():
        return [f"{lock_name} is missing"], f"{lock_name}: missing"
    result = dvc(repo, "repro", "--dry", "--allow-missing", "--keep-going", pipeline)
    output = result.stdout + result.stderr
    stale = stale_stages(output)
    failures = [f"{lock_name} is stale: stage '{name}' would run" for name in stale]
    if result.returncode != 0 and not stale:
        failures.append(f"dvc repro --dry --allow-missing failed ({result.returncode}): {output.strip()[-2000:]}")
    downstream = [name for name in downstream_stages(output) if name not in stale]
    listed = dvc(repo, "stage", "list", "--name-only", pipeline)
    if listed.returncode != 0:
        failures.append(f"dvc stage list failed ({listed.returncode}): {listed.stderr.strip()[-2000:]}")
    else:
        lock = yaml.safe_load(lock_path.read_text())
        names = [line.strip() for line in listed.stdout.splitlines() if line.strip()]
        names = [name.rpartition(":")[2] for name in names]  # studies/dvc.yaml:eda -> eda, as in its lock
        failures += [f"{lock_name} has no entry for stage '{name}'" for name in stages_missing_from_lock(names, lock)]
    note = f"{lock_name}: up to date with code, params and dependencies"
    if failures:
        note = f"{lock_name}: stale"
        if downstream:
            note += f"; downstream stages that would re-run too: {', '.join(downstream)}"
    return failures, note


# --- main -----------------------------------------------------------------------------------


def run_gate(args: argparse.Namespace) -> tuple[int, str]:
    repo: Path = args.repo
    config = args.config if args.config.is_absolute() else repo / args.config
    failures: list[str] = []
    notes: list[str] = []
    rows = []
    labels: dict[str, str] = {}
    if args.check_lock or args.lock_only:
        lock_failures, note = check_lock(repo)
        failures += lock_failures
        notes.append(note)
        if (repo / "studies" / "dvc.yaml").is_file():  # studies run on demand: a stale study is a note, not a failure
            study_failures, note = check_lock(repo, "studies/dvc.yaml")
            notes += [note, *(f"studies (make studies): {f}" for f in study_failures)]
    if not args.lock_only:
        guards = read_config(config, args.config.as_posix())
        files = list(dict.fromkeys(g.file for g in guards))
        current, errors = load_current(repo, files)
        previous, labels, previous_failures = load_previous(repo, files, args.base)
        failures += previous_failures
        rows = compare(guards, current, previous, errors, accepted_in_history(repo, files, args.base))
        declared = declared_metrics(repo, args.dvc_yaml)
        missing = [path for path in declared if not (repo / path).is_file()]
        failures += [f"{path}: missing file (declared in {args.dvc_yaml})" for path in missing if path not in errors]
        if declared:
            present = len(declared) - len(missing)
            notes.append(f"metrics files declared in {args.dvc_yaml}: {present}/{len(declared)} present")
        ratchet_failures, note = check_floors_ratchet(repo, config, guards, args.base)
        failures += ratchet_failures
        notes.append(note)
    report = render_report(rows, labels, failures, notes)
    return (FAILED if failures or any(not r.ok for r in rows) else PASSED), report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("gate.yaml"), help="guarded metrics, floors, tolerances")
    parser.add_argument("--repo", type=Path, default=Path("."), help="repository root (paths are relative to it)")
    parser.add_argument("--base", metavar="REV", help="compare with this revision (default: previous version)")
    parser.add_argument("--dvc-yaml", default="dvc.yaml", help="its top-level metrics files must all exist")
    parser.add_argument("--check-lock", action="store_true", help="also fail if dvc.lock is stale")
    parser.add_argument("--lock-only", action="store_true", help="only check dvc.lock")
    parser.add_argument("--output", type=Path, help="also write the markdown report here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        status, report = run_gate(args)
    except GateConfigError as err:
        log.error("%s", err)
        return CONFIG_ERROR
    sys.stdout.write(report)
    if args.output is not None:
        with atomic_path(args.output) as tmp:
            tmp.write_text(report)
    if status != PASSED:
        log.error("metric gate failed")
    return status


if __name__ == "__main__":
    sys.exit(main())
