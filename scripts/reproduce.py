"""Reproduce every committed metric from scratch: clone HEAD into a scratch directory, run
`dvc repro --force` (the product, then the studies) from the raw data there, and compare each
metric with the committed value.

A metric guarded in gate.yaml may differ by its tolerance; any other numeric metric by
--tolerance. Timings are ignored. Prints the wall time, the largest difference found, and every
metric that differs; exits 1 if any differs beyond its tolerance.

    MITDB_MIRROR=/data/mitdb python scripts/reproduce.py        # `make reproduce`
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ecgbeats.operations.gate import flatten, is_nondeterministic
from scripts.metric_gate import declared_metrics, read_config


def numeric(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def compare_metrics(
    committed: dict[str, object], reproduced: dict[str, object], tolerances: dict[tuple[str, str], float],
    default_tolerance: float,
) -> tuple[list[dict[str, object]], int]:  # fmt: skip
    """Rows for every metric that differs (or is missing), and the number of metrics compared."""
    rows: list[dict[str, object]] = []
    compared = 0
    for path, data in committed.items():
        flat_committed = flatten(data)
        flat_reproduced = flatten(reproduced.get(path) or {})
        for key, value in flat_committed.items():
            if is_nondeterministic(key):
                continue
            compared += 1
            tolerance = tolerances.get((path, key), default_tolerance)
            if key not in flat_reproduced:
                rows.append({"path": path, "key": key, "committed": value, "reproduced": None, "diff": None,
                             "tolerance": tolerance, "ok": False})  # fmt: skip
                continue
            new = flat_reproduced[key]
            if numeric(value) and numeric(new):
                diff = abs(float(new) - float(value))
                if diff > 0:
                    rows.append({"path": path, "key": key, "committed": value, "reproduced": new, "diff": diff,
                                 "tolerance": tolerance, "ok": diff <= tolerance + 1e-12})  # fmt: skip
            elif new != value:
                rows.append({"path": path, "key": key, "committed": value, "reproduced": new, "diff": None,
                             "tolerance": tolerance, "ok": False})  # fmt: skip
    return rows, compared


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=Path("."))
    parser.add_argument("--workdir", type=Path, help="scratch directory (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch clone")
    parser.add_argument("--tolerance", type=float, default=1e-6, help="for metrics not guarded in gate.yaml")
    args = parser.parse_args(argv)
    repo = args.repo.resolve()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ecgbeats-reproduce-"))
    clone = workdir / "repo"
    subprocess.run(["git", "clone", "--quiet", str(repo), str(clone)], check=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True,
                            check=True).stdout.strip()  # fmt: skip
    files = declared_metrics(clone, "dvc.yaml")
    committed = {path: json.loads((clone / path).read_text()) for path in files}
    print(f"reproducing {commit} in {clone}", flush=True)
    start = time.perf_counter()
    # dvc.yaml runs `python -m stages...`: that must be this environment's python
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for pipeline in ("dvc.yaml", "studies/dvc.yaml"):  # the product, then the studies on its outputs
        result = subprocess.run([sys.executable, "-m", "dvc", "repro", "--force", pipeline], cwd=clone, env=env)
        if result.returncode != 0:
            print(f"dvc repro --force {pipeline} failed after {time.perf_counter() - start:.0f} s "
                  f"(exit {result.returncode})")  # fmt: skip
            return 1
    wall = time.perf_counter() - start
    reproduced = {path: json.loads((clone / path).read_text()) for path in files if (clone / path).is_file()}
    tolerances = {(g.file, g.key): g.tolerance for g in read_config(clone / "gate.yaml") if not g.is_pattern}
    rows, compared = compare_metrics(committed, reproduced, tolerances, args.tolerance)
    largest = max((r for r in rows if r["diff"] is not None), key=lambda r: r["diff"], default=None)
    print(f"\n## Reproduction of {commit}\n")
    print(f"- `dvc repro --force` wall time: {wall:.0f} s")
    print(f"- metrics compared: {compared} in {len(files)} files; differing: {len(rows)}")
    if largest:
        print(f"- largest difference: {largest['path']} {largest['key']}: {largest['diff']:.6g}")
    else:
        print("- largest difference: 0 (every metric reproduced exactly)")
    if rows:
        print("\n| Path | Metric | Committed | Reproduced | Difference | Tolerance | Status |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            diff = "–" if r["diff"] is None else f"{r['diff']:.6g}"
            print(f"| {r['path']} | {r['key']} | {r['committed']} | {r['reproduced']} | {diff} | {r['tolerance']} | "
                  f"{'ok' if r['ok'] else 'FAIL'} |")  # fmt: skip
    if not args.keep and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
