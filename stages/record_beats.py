"""Stage record_beats: every annotated beat of the DS1 and DS2 records, measured on the raw record
(``ecgbeats.features.record``), one parquet per set, with the counts per set and lead."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ecgbeats.data.aami import DS1, DS2
from ecgbeats.data.dataset import InputDataError, class_counts
from ecgbeats.data.mitdb import DataIntegrityError, verify_directory
from ecgbeats.features.record import META_COLUMNS, RecordBeatConfig, annotated_table
from ecgbeats.io import write_json, write_parquet
from stages.common import load_params, setup_logging

log = logging.getLogger("stages.record_beats")
SETS = {"ds1": DS1, "ds2": DS2}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", required=True, help="verified MIT-BIH directory (download stage)")
    parser.add_argument("--out", required=True, type=Path, help="directory for ds1.parquet and ds2.parquet")
    parser.add_argument("--metrics", required=True, type=Path, help="counts per set, record and lead")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    setup_logging()
    config = RecordBeatConfig.from_params(load_params("record", args.params)["beat"])
    try:
        present = verify_directory(args.raw, manifest_sha256=load_params("download", args.params)["sha256sums"])
        tables = {
            name: annotated_table(args.raw, [r for r in records if r in present], config)
            for name, records in SETS.items()
        }
    except (InputDataError, DataIntegrityError) as err:
        print(f"record_beats failed: {err}", file=sys.stderr)
        return 1
    summary = {}
    for name, table in tables.items():
        if table.empty:
            print(f"record_beats failed: no {name.upper()} record in {args.raw}", file=sys.stderr)
            return 1
        write_parquet(table, args.out / f"{name}.parquet")
        leads = table.groupby("record")[["lead_a", "lead_b"]].first()
        summary[name] = {
            "records": int(table["record"].nunique()),
            "beats": len(table),
            "classes": class_counts(table["label"]),
            "second_leads": {str(k): int(v) for k, v in leads["lead_b"].value_counts().sort_index().items()},
            "first_leads": {str(k): int(v) for k, v in leads["lead_a"].value_counts().sort_index().items()},
        }
        log.info("%s: %d beats of %d records", name, len(table), summary[name]["records"])
    write_json({"features": len([c for c in tables["ds1"].columns if c not in META_COLUMNS]), **summary},
               args.metrics)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
