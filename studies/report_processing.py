"""Study report_processing: reports/processing.md and its figures from the processing measurements.

Every number in the report comes from the JSON files the processing stages and studies wrote
(``metrics/processing/``); the values and figures are :mod:`ecgbeats.analysis.processing_report`'s.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from ecgbeats.analysis import processing_report
from ecgbeats.analysis.plots import save
from ecgbeats.analysis.reporting import render
from ecgbeats.data.dataset import load_beats
from ecgbeats.data.splits import PROTOCOLS
from ecgbeats.io import atomic_path
from ecgbeats.modelling.bundle import load_bundle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics", required=True, type=Path, help="metrics/processing")
    parser.add_argument(
        "--augment-train", required=True, type=Path, help="a training split for the augmentation figure"
    )
    parser.add_argument("--split", required=True, type=Path, help="the interpatient split metrics (split.json)")
    parser.add_argument("--models", required=True, type=Path, help="directory of the protocols' bundles")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--plots", required=True, type=Path)
    parser.add_argument("--template", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    documents = {path.stem: json.loads(path.read_text()) for path in sorted(args.metrics.glob("*.json"))}
    values, figures = processing_report.report(
        documents,
        json.loads(args.split.read_text()),
        load_beats(args.augment_train),
        {p: load_bundle(args.models / p).booster for p in PROTOCOLS},
        yaml.safe_load(Path(args.params).read_text()),
    )
    for name, figure in figures.items():
        save(figure, args.plots / name)
    with atomic_path(args.out) as tmp:
        tmp.write_text(render(args.template.read_text(), values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
