"""Study shift_mitigations: variants of the interpatient model retrained and measured on the DS2 holdout.

Each variant is the ``train`` params plus its overrides (``shift.mitigations``), early-stopped on the
validation records and scored on validation, the in-patient test set and the holdout, with a paired
record-level bootstrap of its holdout macro-F1 against ``shift.mitigation_baseline``. Choosing among
them by the holdout would be peeking: the report says so beside the validation choice.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ecgbeats.analysis import shift_report
from ecgbeats.analysis.plots import save
from ecgbeats.analysis.reporting import render
from ecgbeats.analysis.shift_report import MitigationSettings
from ecgbeats.data.dataset import load_beats
from ecgbeats.features.groups import protocol_groups
from ecgbeats.io import atomic_dir, atomic_path, write_csv, write_json
from stages.common import load_params, setup_logging

log = logging.getLogger("studies.shift_mitigations")

PROTOCOL = "interpatient"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, type=Path, help="directory with train/val/test/holdout parquet")
    parser.add_argument("--metrics", required=True, type=Path, help="metrics JSON to write")
    parser.add_argument("--plots", required=True, type=Path, help="directory for plot data and figures")
    parser.add_argument("--report", required=True, type=Path, help="report markdown to write")
    parser.add_argument("--template", required=True, type=Path, help="report template")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    setup_logging()
    settings = MitigationSettings.from_params(load_params("shift", args.params))
    train_params = load_params("train", args.params)
    sets = {name: load_beats(args.data / f"{name}.parquet") for name in shift_report.SETS}
    results = shift_report.mitigations(
        sets,
        settings.variants,
        train_params=train_params,
        feature_groups=protocol_groups(train_params["features"], PROTOCOL),
        baseline=settings.baseline,
        num_threads=settings.num_threads,
        n_boot=settings.bootstrap,
        seed=settings.seed,
    )
    with atomic_dir(args.plots) as tmp:
        for name, table in shift_report.mitigation_plot_data(results).items():
            write_csv(table, tmp / name)
        for name, draw in shift_report.MITIGATION_FIGURES.items():
            save(draw(results), tmp / name)
    with atomic_path(args.report) as tmp_report:
        values = shift_report.mitigation_report_values(results, settings)
        tmp_report.write_text(render(args.template.read_text(), values))
    write_json({"baseline": settings.baseline, "variants": results}, args.metrics)
    log.info("shift mitigations written: %s, %s, %s", args.metrics, args.plots, args.report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
