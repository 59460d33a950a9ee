"""Stage shift: how much worse the interpatient model gets under data shift, and why.

Patient shift (in-patient test vs the DS2 holdout, same model), synthetic shifts at several
severities on both sets, label shift on the holdout, drift statistics against the in-patient test
set and likely causes. The synthetic shifts run on seeded, stratified subsamples (``shift.subsample``)
to keep the stage within minutes. The analysis is :mod:`ecgbeats.analysis.shift_report`; this module
reads the params and inputs and writes the outputs. Retrained mitigations are the study
``studies.shift_mitigations``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from ecgbeats.analysis import shift_report
from ecgbeats.analysis.plots import save
from ecgbeats.analysis.reporting import render
from ecgbeats.analysis.shift_report import ShiftSettings
from ecgbeats.data.dataset import load_beats
from ecgbeats.io import atomic_dir, atomic_path, write_csv, write_json
from ecgbeats.modelling.bundle import load_bundle
from stages.common import beat_end_of, load_params, setup_logging

log = logging.getLogger("stages.shift")


def imputation(params_path: str | Path) -> dict[str, Any]:
    """The ``impute`` params (method, knn settings); linear interpolation when the section is absent."""
    defaults = {"method": "linear", "knn_k": 5, "knn_reference_beats": 5000}
    try:
        return {**defaults, **load_params("impute", params_path)}
    except KeyError:
        return defaults


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, type=Path, help="interpatient model bundle")
    parser.add_argument("--data", required=True, type=Path, help="directory with train/val/test/holdout parquet")
    parser.add_argument("--raw", type=Path, help="raw MIT-BIH records (needed by the sampling shift)")
    parser.add_argument("--metrics", required=True, type=Path, help="metrics JSON to write")
    parser.add_argument("--plots", required=True, type=Path, help="directory for plot data and figures")
    parser.add_argument("--report", required=True, type=Path, help="report markdown to write")
    parser.add_argument("--template", required=True, type=Path, help="report template")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    setup_logging()
    started = time.perf_counter()
    impute = imputation(args.params)  # lost samples are filled with the pipeline's chosen method
    beat_end = beat_end_of(load_params("ingest", args.params, optional=True), "interpatient")
    settings = ShiftSettings.from_params(
        load_params("shift", args.params), dropout_method=impute["method"], beat_end=beat_end
    )
    bundle = load_bundle(args.model)
    sets = {name: load_beats(args.data / f"{name}.parquet") for name in shift_report.SETS}
    knn = shift_report.dropout_imputer(
        settings, sets["train"], k=int(impute["knn_k"]), reference_beats=int(impute["knn_reference_beats"])
    )
    metrics = shift_report.analyse(
        sets,
        bundle,
        settings,
        knn=knn,
        raw_dir=args.raw,
    )

    with atomic_dir(args.plots) as tmp:  # the directory is replaced only when every file is written
        for name, table in shift_report.plot_data(metrics).items():
            write_csv(table, tmp / name)
        for name, draw in shift_report.FIGURES.items():
            save(draw(metrics, sets), tmp / name)
    with atomic_path(args.report) as tmp_report:
        tmp_report.write_text(render(args.template.read_text(), shift_report.report_values(metrics, settings)))
    write_json(metrics, args.metrics)
    log.info(
        "shift written in %.0f s: %s, %s, %s", time.perf_counter() - started, args.metrics, args.plots, args.report
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
