"""Stage ingest: the beat tables (Kaggle format plus provenance) and their counts and fidelity.

One table per protocol, cut by its ``ingest.beat_end``; one build when both use the same rule.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

import pandas as pd

from ecgbeats.data.dataset import (
    InputDataError,
    build_beat_table,
    class_counts,
    read_kaggle_dir,
)
from ecgbeats.data.fidelity import compare_with_reference, load_reference, summarize
from ecgbeats.data.mitdb import DataIntegrityError, verify_directory
from ecgbeats.data.splits import PROTOCOLS
from ecgbeats.io import write_csv, write_json, write_parquet
from stages.common import beat_end_of, load_params, setup_logging

log = logging.getLogger("stages.ingest")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", required=True, help="verified MIT-BIH directory (download stage)")
    parser.add_argument("--reference", required=True, help="directory of published Kaggle rows")
    parser.add_argument("--out", required=True, help="the Kaggle protocol's beat table (parquet)")
    parser.add_argument("--out-interpatient", required=True, help="the inter-patient protocol's beat table")
    parser.add_argument("--metrics", required=True, help="metrics JSON (counts, fidelity)")
    parser.add_argument("--fidelity", required=True, help="per-row fidelity CSV")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    setup_logging()
    params = load_params("ingest", args.params)
    started = time.perf_counter()
    try:
        if params["source"] == "wfdb":
            # the records are read only as verified: a byte changed since the download stops here
            records = verify_directory(args.raw, manifest_sha256=load_params("download", args.params)["sha256sums"])
            rules = {protocol: beat_end_of(params, protocol) for protocol in PROTOCOLS}
            tables: dict[str, pd.DataFrame] = {}
            for rule in dict.fromkeys(rules.values()):  # each distinct rule once
                tables[rule] = build_beat_table(
                    args.raw, records, local_rr_beats=int(params["local_rr_beats"]), beat_end=rule
                )
            beats, interpatient = tables[rules["kaggle"]], tables[rules["interpatient"]]
        elif params["source"] == "kaggle_csv":
            beats = interpatient = read_kaggle_dir(params["kaggle_csv_dir"])  # no records: one table
        else:
            raise InputDataError(f"ingest.source must be 'wfdb' or 'kaggle_csv', got {params['source']!r}")
    except (InputDataError, DataIntegrityError) as err:
        print(f"ingest failed: {err}", file=sys.stderr)
        return 1
    reference = load_reference(args.reference)
    comparison = compare_with_reference(beats, reference)
    wfdb_source = params["source"] == "wfdb"
    write_parquet(beats, args.out)
    write_parquet(interpatient, args.out_interpatient)
    write_csv(comparison, args.fidelity)
    write_json(
        {
            "source": params["source"],
            # the rules the fidelity figures below were measured with (None: the published rows themselves)
            "beat_end": beat_end_of(params, "kaggle") if wfdb_source else None,
            "beats": len(beats),
            "records": int(beats["record"].nunique()),
            "classes": class_counts(beats["label"]),
            "fidelity": summarize(comparison),
            "interpatient": {
                "beat_end": beat_end_of(params, "interpatient") if wfdb_source else None,
                "beats": len(interpatient),
                "classes": class_counts(interpatient["label"]),
                "fidelity": summarize(compare_with_reference(interpatient, reference)),
            },
        },
        args.metrics,
    )
    log.info("ingest: %d beats in %.1f s", len(beats), time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
