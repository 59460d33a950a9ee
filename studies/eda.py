"""Stage eda: figures, plot data, metrics and reports/eda.md describing the beat table and its splits."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import pandas as pd

from ecgbeats.analysis import eda_report
from ecgbeats.analysis.eda import NEIGHBOUR_PAIRS, EdaSettings, analyse
from ecgbeats.analysis.plots import save
from ecgbeats.analysis.reporting import render
from ecgbeats.data.dataset import SAMPLE_COLUMNS, load_beats
from ecgbeats.data.splits import INTERPATIENT_SETS, KAGGLE_SETS
from ecgbeats.io import atomic_dir, atomic_path, write_csv, write_json
from stages.common import load_params, setup_logging

log = logging.getLogger("studies.eda")

PROTOCOL_SETS = {"kaggle": KAGGLE_SETS, "interpatient": INTERPATIENT_SETS}


def read_sets(directory: Path) -> dict[str, pd.DataFrame]:
    """Every set of both protocols: label and record always, samples for the neighbour check."""
    need_samples = {(p, s) for p, *sets in NEIGHBOUR_PAIRS.values() for s in sets}
    sets = {}
    for protocol, names in PROTOCOL_SETS.items():
        for name in names:
            path = directory / protocol / f"{name}.parquet"
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing; run the split@{protocol} stage first")
            columns = ["record", "label"] + (SAMPLE_COLUMNS if (protocol, name) in need_samples else [])
            sets[f"{protocol} {name}"] = pd.read_parquet(path, columns=columns)
    return sets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--beats", required=True, type=Path, help="beat table parquet (ingest stage)")
    parser.add_argument("--splits", required=True, type=Path, help="directory holding <protocol>/<set>.parquet")
    parser.add_argument("--template", required=True, type=Path, help="report template")
    parser.add_argument("--report", required=True, type=Path, help="report markdown to write")
    parser.add_argument("--plots", required=True, type=Path, help="directory for figures and plot data")
    parser.add_argument("--metrics", required=True, type=Path, help="metrics JSON to write")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    setup_logging()
    started = time.perf_counter()
    settings = EdaSettings.from_params(load_params("eda", args.params))

    beats = load_beats(args.beats)
    if beats["record"].isna().any():
        print("eda needs the record of every beat (ingest.source: wfdb); the Kaggle CSVs have none", file=sys.stderr)
        return 1
    result = analyse(beats, read_sets(args.splits), settings)

    with atomic_dir(args.plots) as tmp:  # the directory is replaced only when every file is written
        for name, draw in eda_report.FIGURES.items():
            save(draw(result), tmp / name)
        for name, table in eda_report.PLOT_DATA.items():
            write_csv(table(result), tmp / name)
    with atomic_path(args.report) as tmp_report:
        tmp_report.write_text(render(args.template.read_text(), eda_report.report_values(result)))
    write_json(eda_report.metrics(result), args.metrics)
    log.info("eda written in %.1f s: %s, %s, %s", time.perf_counter() - started, args.report, args.plots, args.metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
