"""Study report_modelling: reports/modelling.md from its template and the pipeline's own metrics
(the values are :mod:`ecgbeats.analysis.modelling_report`'s)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from ecgbeats.analysis import modelling_report
from ecgbeats.analysis.reporting import render
from ecgbeats.data.splits import PROTOCOLS
from ecgbeats.io import atomic_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics", required=True, type=Path, help="metrics directory")
    parser.add_argument("--plots", required=True, type=Path, help="plots directory")
    parser.add_argument("--tuning", required=True, type=Path, help="CSV exported from `dvc exp show --csv`")
    parser.add_argument("--template", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)

    def load(*parts: str) -> dict:
        return json.loads(args.metrics.joinpath(*parts).read_text())

    values = modelling_report.report(
        {(p, s): load(p, f"{s}.json") for p, s in modelling_report.SETS},
        {p: load(p, "train.json") for p in PROTOCOLS},
        {p: load(p, "baselines.json") for p in PROTOCOLS},
        {p: pd.read_csv(args.plots / p / "size" / "size_curve.csv") for p in PROTOCOLS},
        pd.read_csv(args.tuning),
    )
    values |= modelling_report.record_values(
        load("record-reference", "cv.json"),
        load("record-reference", "holdout.json"),
        load("record-reference", "ec57.json"),
        load("interpatient", "holdout.json"),
        load("record-reference", "reference.json"),
        {
            "holdout": load("record", "holdout.json"),
            "ec57": load("record", "ec57.json"),
            "cv": load("record", "cv.json"),
        },
    )
    values |= modelling_report.event_values(load("record-reference", "events.json"), load("record", "events.json"))
    with atomic_path(args.out) as tmp:
        tmp.write_text(render(args.template.read_text(), values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
