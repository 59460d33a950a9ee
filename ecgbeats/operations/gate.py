"""Metric regression gate: compare guarded metrics with their previous version and with absolute floors.

Pure logic only: the caller reads the files (from the workspace and from git) and runs dvc; this
module validates the gate config, flattens nested metrics to dotted keys, decides pass or fail for
each guarded metric, renders the markdown report, checks that floors only ratchet up, and parses
the output of ``dvc repro --dry --allow-missing``.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeGuard

Direction = Literal["higher", "lower", "equal"]
DIRECTIONS: tuple[str, ...] = ("higher", "lower", "equal")
ENTRY_FIELDS = frozenset({"file", "key", "direction", "tolerance", "floor"})
# Timing values change from run to run: guarding them would make the gate flaky.
NONDETERMINISTIC_PATTERNS: tuple[str, ...] = (
    "*seconds*", "*duration*", "*timestamp*", "*elapsed*",  # wall times
    "*per_second*", "*ms_per_beat*", "*one_beat_ms*", "*load_average*",  # speeds and the load they ran under
)  # fmt: skip
# Metrics are written with six decimals: differences below this are rounding noise.
EPSILON = 1e-9


class GateConfigError(ValueError):
    """The gate config (or a baseline revision) is unusable: the gate cannot decide anything."""


@dataclass(frozen=True)
class Guard:
    """One guarded metric: ``key`` may be a glob (``classes.*``) over the file's dotted keys."""

    file: str
    key: str
    direction: Direction
    tolerance: float
    floor: float | None = None

    @property
    def is_pattern(self) -> bool:
        return any(ch in self.key for ch in "*?[")


@dataclass
class Row:
    """One line of the report: a concrete metric, its two values and the verdict."""

    path: str
    metric: str
    guard: Guard
    previous: Any = None
    current: Any = None
    note: str = ""
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def change(self) -> float | None:
        if _is_number(self.previous) and _is_number(self.current):
            return float(self.current) - float(self.previous)
        return None

    @property
    def status(self) -> str:
        if self.failures:
            return "FAIL: " + "; ".join(self.failures)
        return self.note or "ok"


# --- config -----------------------------------------------------------------------------------


def parse_config(data: Any, source: str = "gate config") -> list[Guard]:
    """Validate a loaded gate YAML (``defaults`` + ``metrics`` list) into guards; raise GateConfigError."""
    if not isinstance(data, Mapping):
        raise GateConfigError(f"{source}: expected a mapping with a 'metrics' list")
    unknown = set(data) - {"defaults", "metrics"}
    if unknown:
        raise GateConfigError(f"{source}: unknown top-level keys {sorted(unknown)}")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, Mapping) or set(defaults) - (ENTRY_FIELDS - {"file", "key"}):
        raise GateConfigError(f"{source}: 'defaults' may only set direction, tolerance and floor")
    entries = data.get("metrics")
    if not isinstance(entries, list) or not entries:
        raise GateConfigError(f"{source}: 'metrics' must be a non-empty list")
    guards: list[Guard] = []
    seen: set[tuple[str, str]] = set()
    for i, entry in enumerate(entries):
        where = f"{source}: metrics[{i}]"
        if not isinstance(entry, Mapping):
            raise GateConfigError(f"{where}: expected a mapping")
        unknown = set(entry) - ENTRY_FIELDS
        if unknown:
            raise GateConfigError(f"{where}: unknown fields {sorted(unknown)}")
        merged = {**defaults, **entry}
        guard = _parse_entry(merged, where)
        if (guard.file, guard.key) in seen:
            raise GateConfigError(f"{where}: {guard.file} {guard.key} is guarded twice")
        seen.add((guard.file, guard.key))
        guards.append(guard)
    return guards


def _parse_entry(entry: Mapping[str, Any], where: str) -> Guard:
    file, key = entry.get("file"), entry.get("key")
    if not isinstance(file, str) or not file.strip():
        raise GateConfigError(f"{where}: 'file' must be a path")
    if file.startswith("/") or ".." in file.split("/"):
        raise GateConfigError(f"{where}: 'file' must be relative to the repository root: {file}")
    if not isinstance(key, str) or not key.strip():
        raise GateConfigError(f"{where}: 'key' must be a dotted key")
    if is_nondeterministic(key):
        raise GateConfigError(f"{where}: {key} changes from run to run and must not be guarded")
    direction = entry.get("direction")
    if direction not in DIRECTIONS:
        raise GateConfigError(f"{where}: 'direction' must be one of {', '.join(DIRECTIONS)}, not {direction!r}")
    tolerance = entry.get("tolerance")
    if not _is_number(tolerance) or tolerance < 0 or not math.isfinite(tolerance):
        raise GateConfigError(f"{where}: 'tolerance' must be a finite number >= 0, not {tolerance!r}")
    floor = entry.get("floor")
    if floor is not None:
        if direction == "equal":
            raise GateConfigError(f"{where}: a floor needs direction higher or lower")
        if not _is_number(floor) or not math.isfinite(floor):
            raise GateConfigError(f"{where}: 'floor' must be a finite number, not {floor!r}")
    return Guard(
        file=file.removeprefix("./"),
        key=key,
        direction=direction,
        tolerance=float(tolerance),
        floor=None if floor is None else float(floor),
    )


def is_nondeterministic(key: str) -> bool:
    return any(fnmatch.fnmatchcase(key.lower(), pattern) for pattern in NONDETERMINISTIC_PATTERNS)


# --- comparison -------------------------------------------------------------------------------


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts (and lists, by index) to ``{"a.b.c": leaf}``, as ``dvc metrics show`` names them."""
    if isinstance(data, Mapping):
        items: Iterable[tuple[Any, Any]] = data.items()
    elif isinstance(data, list):
        items = enumerate(data)
    else:
        return {prefix: data} if prefix else {}
    flat: dict[str, Any] = {}
    for name, value in items:
        flat.update(flatten(value, f"{prefix}.{name}" if prefix else str(name)))
    return flat


ACCEPT_TRAILER = "Metric-Regression-Accepted"
_ACCEPT_LINE = re.compile(rf"^{ACCEPT_TRAILER}:\s*(\S+)\s+(\S+)", re.MULTILINE)


def accepted_regressions(message: str) -> set[tuple[str, str]]:
    """(file, key) pairs whose drop beyond tolerance a commit message accepts on purpose.

    One trailer line per metric, with the reason after it, for example
    ``Metric-Regression-Accepted: metrics/interpatient/holdout.json accuracy  balanced weights trade
    N accuracy for S and V sensitivity``. Floors still apply to accepted metrics.
    """
    return {(file, key) for file, key in _ACCEPT_LINE.findall(message)}


def compare(
    guards: Iterable[Guard],
    current: Mapping[str, Any],
    previous: Mapping[str, Any],
    current_errors: Mapping[str, str] | None = None,
    accepted: Collection[tuple[str, str]] = (),
) -> list[Row]:
    """Check every guard.

    ``current`` maps each guarded file to its loaded JSON; a file that is absent from the mapping
    (or maps to None) is missing, and ``current_errors`` may say why (unreadable, invalid JSON).
    ``previous`` maps a file to its previous version, or None / absent when it has none (a new
    file): then only the floor applies.
    """
    current_errors = current_errors or {}
    rows: list[Row] = []
    for guard in guards:
        now = current.get(guard.file)
        before = previous.get(guard.file)
        if now is None:
            reason = current_errors.get(guard.file, "missing file")
            rows.append(Row(guard.file, guard.key, guard, failures=[reason]))
            continue
        flat_now = flatten(now)
        flat_before = None if before is None else flatten(before)
        for key in _expand(guard, flat_now, flat_before):
            rows.append(_check(guard, key, flat_now, flat_before, (guard.file, key) in accepted))
    return rows


def _expand(guard: Guard, flat_now: Mapping[str, Any], flat_before: Mapping[str, Any] | None) -> list[str]:
    if not guard.is_pattern:
        return [guard.key]
    names = dict.fromkeys([*flat_now, *(flat_before or {})])  # the file's order, then keys that went away
    matched = [k for k in names if fnmatch.fnmatchcase(k, guard.key) and not is_nondeterministic(k)]
    return matched or [guard.key]  # no match at all: report the pattern itself as missing


def _check(
    guard: Guard,
    key: str,
    flat_now: Mapping[str, Any],
    flat_before: Mapping[str, Any] | None,
    accepted: bool = False,
) -> Row:
    row = Row(guard.file, key, guard)
    if flat_before is None:
        row.note = "new file: floor only"
    elif key in flat_before:
        row.previous = flat_before[key]
    else:
        row.note = "new key: floor only"
    if key not in flat_now:
        row.failures.append("missing key")
        return row
    row.current = value = flat_now[key]
    if guard.direction == "equal":
        if row.note:
            return row
        if _is_number(value) and _is_number(row.previous):
            if abs(float(value) - float(row.previous)) > guard.tolerance + EPSILON:
                row.failures.append(f"changed by {_fmt_change(row.change)} (tolerance {_fmt(guard.tolerance)})")
        elif value != row.previous:
            row.failures.append(f"changed from {row.previous!r} to {value!r}")
        return row
    if not _is_number(value) or not math.isfinite(value):
        row.failures.append(f"not a finite number: {value!r}")
        return row
    sign = 1.0 if guard.direction == "higher" else -1.0
    if guard.floor is not None and sign * (value - guard.floor) < -EPSILON:
        row.failures.append(f"{'below floor' if sign > 0 else 'above ceiling'} {_fmt(guard.floor)}")
    if row.note:
        return row
    if not _is_number(row.previous) or not math.isfinite(row.previous):
        row.note = f"previous value {row.previous!r} not a number: floor only"
        return row
    change = value - row.previous
    if sign * change < -(guard.tolerance + EPSILON):
        word = "dropped" if sign > 0 else "rose"
        if accepted:
            row.note = f"{word} by {_fmt(abs(change))}: accepted ({ACCEPT_TRAILER})"
        else:
            row.failures.append(f"{word} by {_fmt(abs(change))} (tolerance {_fmt(guard.tolerance)})")
    elif sign * change > EPSILON:
        row.note = "improved"
    elif sign * change < -EPSILON:
        row.note = "ok (within tolerance)"
    return row


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- floors ratchet ---------------------------------------------------------------------------


def floor_ratchet_failures(previous: Iterable[Guard], current: Iterable[Guard]) -> list[str]:
    """Floors may only tighten: every floor of the previous config must still exist and be no looser."""
    now = {(g.file, g.key): g for g in current}
    failures = []
    for old in previous:
        if old.floor is None:
            continue
        name = f"{old.file} {old.key}"
        new = now.get((old.file, old.key))
        if new is None:
            failures.append(f"{name}: guard with floor {_fmt(old.floor)} was removed")
        elif new.direction != old.direction:
            failures.append(f"{name}: direction changed from {old.direction} to {new.direction}")
        elif new.floor is None:
            failures.append(f"{name}: floor {_fmt(old.floor)} was removed")
        elif (new.floor - old.floor) * (1 if old.direction == "higher" else -1) < -EPSILON:
            bound = "floor lowered" if old.direction == "higher" else "ceiling raised"
            failures.append(f"{name}: {bound} from {_fmt(old.floor)} to {_fmt(new.floor)}")
    return failures


# --- dvc.lock staleness -----------------------------------------------------------------------

_RUNNING = re.compile(r"^Running stage '([^']+)'", re.MULTILINE)
_FAILED = re.compile(r"failed to reproduce(?: stages:)? ((?:'[^']+'(?:, | and )?)+)")
_SKIPPED = re.compile(r"Stages? ((?:'[^']+'(?:, | and )?)+) will be skipped due to this failure")
_NAME = re.compile(r"'([^']+)'")


def stale_stages(output: str) -> list[str]:
    """Stages that ``dvc repro --dry --allow-missing [--keep-going]`` would run.

    A stale stage whose inputs are absent (data is not in git) cannot even be dry-run: dvc reports
    it as "failed to reproduce"; a stage skipped only for missing data is not stale.
    """
    names = _RUNNING.findall(output)
    for group in _FAILED.findall(output):
        names += _NAME.findall(group)
    return list(dict.fromkeys(names))


def downstream_stages(output: str) -> list[str]:
    """Stages ``--keep-going`` skipped because a stale stage upstream of them could not run."""
    names = [name for group in _SKIPPED.findall(output) for name in _NAME.findall(group)]
    return list(dict.fromkeys(names))


def stages_missing_from_lock(stage_names: Iterable[str], lock: Any) -> list[str]:
    """Stages of dvc.yaml without a dvc.lock entry (``dvc repro --allow-missing`` skips some of them)."""
    locked = set((lock or {}).get("stages") or {}) if isinstance(lock, Mapping) else set()
    return [name for name in stage_names if name not in locked]


# --- report -----------------------------------------------------------------------------------

COLUMNS = ("Path", "Metric", "Previous", "Current", "Change", "Floor", "Tolerance", "Status")


def render_table(rows: Iterable[Row]) -> str:
    """A markdown table in the spirit of ``dvc metrics diff --md``, one line per concrete metric."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    for row in rows:
        guard = row.guard
        cells = [
            row.path,
            row.metric,
            _fmt(row.previous),
            _fmt(row.current),
            _fmt_change(row.change),
            _fmt_floor(guard),
            _fmt_tolerance(guard),
            row.status,
        ]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def render_report(
    rows: list[Row],
    baselines: Mapping[str, str] | None = None,
    failures: Iterable[str] = (),
    notes: Iterable[str] = (),
    title: str = "Metric gate",
) -> str:
    """The whole markdown report: table, the baseline of each file, notes, and every failure reason."""
    failures = [*(f"{r.path} {r.metric}: {'; '.join(r.failures)}" for r in rows if r.failures), *failures]
    parts = [f"## {title}", "", render_table(rows)] if rows else [f"## {title}"]
    if baselines:
        parts += ["", "Previous values:"] + [f"- {path}: {label}" for path, label in sorted(baselines.items())]
    notes = list(notes)
    if notes:
        parts += ["", "Checks:"] + [f"- {note}" for note in notes]
    if failures:
        parts += ["", f"**FAILED** ({len(failures)}):"] + [f"- {reason}" for reason in failures]
    else:
        parts += ["", f"**PASSED**: {len(rows)} metrics checked."]
    return "\n".join(parts) + "\n"


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if _is_number(value):
        return f"{value:.6g}" if isinstance(value, float) else str(value)
    return str(value)


def _fmt_change(change: float | None) -> str:
    if change is None:
        return "—"
    if abs(change) <= EPSILON:
        return "0"
    return f"{change:+.6g}"


def _fmt_floor(guard: Guard) -> str:
    if guard.floor is None:
        return "—"
    return f"{'>=' if guard.direction == 'higher' else '<='} {_fmt(guard.floor)}"


def _fmt_tolerance(guard: Guard) -> str:
    if guard.tolerance == 0:
        return "0"
    sign = {"higher": "-", "lower": "+", "equal": "±"}[guard.direction]
    return f"{sign}{_fmt(guard.tolerance)}"
