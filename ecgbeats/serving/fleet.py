"""A fleet of recordings scored on Dask: one findings table, and each recording's beats, findings and page.

    python -m ecgbeats.serving.fleet INPUTS OUT_DIR [--model DIR] [--workers 2] [--scheduler tcp://host:8786]

``INPUTS`` is a directory (its WFDB records, by their ``.hea``, and its ``.edf`` files) or a manifest
(a text file with one recording path per line, relative to the manifest; ``#`` starts a comment). Each
recording goes through the batch CLI's path (``ecgbeats.serving.batch.run``, streamed) on a Dask worker
and writes ``OUT_DIR/<name>/beats.parquet``, ``findings.json`` and ``report.html``, each atomically,
then ``done.json`` last. A recording with ``done.json`` is skipped on a rerun, so a run stopped by a
killed worker or a Ctrl-C resumes where it stopped, and no output is ever half-written (Dask gives a
killed worker's recording to another worker, which first removes the temporaries the killed write
left). A recording that fails (unreadable, no beats) is listed with its reason and does not stop the
others; nothing of it is marked done. ``OUT_DIR/fleet.csv`` (and ``.parquet``) has one row per
recording: status, reason, duration, beats, heart rate, ectopy, pauses and AF burden. Without
``--scheduler`` a ``distributed.LocalCluster`` of ``--workers`` single-threaded processes runs on this
machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

from ecgbeats.io import write_csv, write_json, write_parquet

log = logging.getLogger(__name__)

DONE = "done.json"
COLUMNS = ["recording", "status", "reason", "seconds", "duration_h", "beats", "mean_bpm", "min_bpm", "max_bpm",
           "V", "V_couplets", "V_runs", "S", "S_runs", "pauses", "af_burden"]  # fmt: skip


class FleetInputError(ValueError):
    """Inputs that stop the whole run (no recording found, a manifest naming a missing file)."""


@dataclass(frozen=True)
class Recording:
    name: str
    path: Path  # a WFDB record base (no extension) or an .edf file


def recordings(inputs: Path) -> list[Recording]:
    """The recordings of a directory or a manifest, in order; names must be unique (they name the outputs)."""
    if inputs.is_dir():
        paths = sorted([p.with_suffix("") for p in inputs.glob("*.hea")] + list(inputs.glob("*.edf")))
    elif inputs.is_file():
        paths = []
        for number, line in enumerate(inputs.read_text().splitlines(), start=1):
            entry = line.split("#", 1)[0].strip()
            if not entry:
                continue
            path = (inputs.parent / entry).with_suffix("") if entry.endswith(".hea") else inputs.parent / entry
            if not (path.with_suffix(".hea").is_file() or (path.suffix.lower() == ".edf" and path.is_file())):
                raise FleetInputError(f"{inputs}: line {number}: {entry} is neither a WFDB record nor an EDF file")
            paths.append(path)
    else:
        raise FleetInputError(f"{inputs}: no such directory or manifest")
    found = [Recording(p.stem if p.suffix.lower() == ".edf" else p.name, p) for p in paths]
    if not found:
        raise FleetInputError(f"{inputs}: no WFDB record (.hea) or EDF file in it")
    names = [r.name for r in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise FleetInputError(f"{inputs}: recordings share a name ({', '.join(twice)}); their outputs would collide")
    return found


@cache
def _scorer(model: str) -> Any:
    """One verified bundle per worker process, loaded on its first recording."""
    from ecgbeats.modelling.bundle import load_bundle
    from ecgbeats.serving.scoring import Scorer

    return Scorer(load_bundle(Path(model)), num_threads=1)


def summary_row(name: str, found: dict[str, Any], seconds: float) -> dict[str, Any]:
    """A recording's row of the fleet table, from its findings."""
    v, s, hr, af = found["ventricular"], found["supraventricular"], found["heart_rate"], found["atrial_fibrillation"]
    return {
        "recording": name, "status": "done", "reason": "", "seconds": round(seconds, 2),
        "duration_h": round(found["duration_s"] / 3600, 3), "beats": found["beats"]["total"],
        "mean_bpm": hr["mean_bpm"], "min_bpm": hr["min_bpm"], "max_bpm": hr["max_bpm"],
        "V": v["beats"], "V_couplets": v["couplets"], "V_runs": len(v["runs"]), "S": s["beats"],
        "S_runs": len(s["runs"]), "pauses": len(found["pauses"]), "af_burden": None if af is None else af["burden"],
    }  # fmt: skip


def score_recording(recording: Recording, out_dir: Path, model: str) -> dict[str, Any]:
    """One recording on a worker: its outputs, then ``done.json`` (the row); a failure is a row too."""
    from ecgbeats.serving.batch import BatchInputError, run

    target = out_dir / recording.name
    for stale in target.glob(".*.tmp"):  # a write cut short by a killed worker (atomic_path's temporaries)
        stale.unlink(missing_ok=True)
    start = time.perf_counter()
    try:
        run(recording.path, target / "beats.parquet", _scorer(model), progress=False,
            findings_path=target / "findings.json", report_path=target / "report.html")  # fmt: skip
    except (BatchInputError, OSError, ValueError) as err:
        return {"recording": recording.name, "status": "failed", "reason": str(err)}
    found = json.loads((target / "findings.json").read_text())
    row = summary_row(recording.name, found, time.perf_counter() - start)
    write_json(row, target / DONE)
    return row


def run_fleet(inputs: Path, out_dir: Path, model: Path, client: Any, progress: bool = True) -> pd.DataFrame:
    """Score every recording not yet done on ``client`` (a ``distributed.Client``); write and return the table."""
    from distributed import as_completed
    from tqdm import tqdm

    every = recordings(inputs)
    todo, rows = [], {}
    for recording in every:
        done = out_dir / recording.name / DONE
        if done.is_file():
            rows[recording.name] = {**json.loads(done.read_text()), "status": "done (earlier run)"}
        else:
            todo.append(recording)
    log.info("%d recordings: %d done earlier, %d to score", len(rows) + len(todo), len(rows), len(todo))
    futures = [client.submit(score_recording, r, out_dir, str(model), key=f"recording-{r.name}", pure=False)
               for r in todo]  # fmt: skip
    with tqdm(total=len(futures), unit="recording", disable=not progress) as bar:
        for future in as_completed(futures):
            try:
                row = future.result()
            except Exception as err:  # a worker lost for good, an unexpected error: this recording only
                name = future.key.removeprefix("recording-")
                row = {"recording": name, "status": "failed", "reason": f"{type(err).__name__}: {err}"}
            rows[row["recording"]] = row
            if row["status"] == "failed":
                log.warning("%s failed: %s", row["recording"], row["reason"])
            bar.update(1)
    table = pd.DataFrame([rows[r.name] for r in every]).reindex(columns=COLUMNS)
    write_csv(table, out_dir / "fleet.csv")
    write_parquet(table, out_dir / "fleet.parquet")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ecgbeats.serving.fleet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("inputs", type=Path, help="a directory of recordings, or a manifest of their paths")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--model", type=Path, help="a record bundle (default: the service's, ECGBEATS_MODEL_DIR)")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (1 thread each)")
    parser.add_argument("--scheduler", help="a running Dask scheduler (tcp://host:8786) instead of a LocalCluster")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    from ecgbeats.operations.compute import ComputeConfig, SchedulerUnreachableError, compute_client
    from ecgbeats.serving.settings import SettingsError, load_settings

    try:
        model = args.model or Path(load_settings().model_dir)
        recordings(args.inputs)  # bad inputs stop here, before a cluster starts
        if args.scheduler:
            with compute_client(ComputeConfig("dask", args.scheduler)) as client:
                table = run_fleet(args.inputs, args.out_dir, model, client, progress=not args.no_progress)
        else:
            from distributed import Client, LocalCluster

            with (
                LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None)
                as cluster,
                Client(cluster) as client,
            ):  # fmt: skip
                table = run_fleet(args.inputs, args.out_dir, model, client, progress=not args.no_progress)
    except (FleetInputError, SettingsError, SchedulerUnreachableError) as err:
        print(f"ecgbeats fleet: {err}", file=sys.stderr)
        return 2
    failed = table[table["status"] == "failed"]
    log.info("%d recordings in %s: %d failed", len(table), args.out_dir / "fleet.csv", len(failed))
    return 1 if len(failed) else 0


if __name__ == "__main__":
    sys.exit(main())
