"""Stage ingest: the beat table (Kaggle format plus provenance) and its counts and fidelity."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from ecgbeats.data.dataset import (
    InputDataError,
    build_beat_table,
    class_counts,
    read_kaggle_dir,
)
from ecgbeats.data.fidelity import compare_with_reference, load_reference, summarize
from ecgbeats.data.mitdb import DataIntegrityError, verify_directory
from ecgbeats.io import write_csv, write_json, write_parquet
from stages.common import load_params, setup_logging

log = logging.getLogger("stages.ingest")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", required=True, help="verified MIT-BIH directory (download stage)")
    parser.add_argument("--reference", required=True, help="directory of published Kaggle rows")
    parser.add_argument("--out", required=True, help="beat table parquet")
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
            beats = build_beat_table(args.raw, records, local_rr_beats=int(params["local_rr_beats"]),
                                     beat_end=params["beat_end"])  # fmt: skip
        elif params["source"] == "kaggle_csv":
            beats = read_kaggle_dir(params["kaggle_csv_dir"])
        else:
            raise InputDataError(f"ingest.source must be 'wfdb' or 'kaggle_csv', got {params['source']!r}")
    except (InputDataError, DataIntegrityError) as err:
        print(f"ingest failed: {err}", file=sys.stderr)
        return 1
    comparison = compare_with_reference(beats, load_reference(args.reference))
    write_parquet(beats, args.out)
    write_csv(comparison, args.fidelity)
    write_json(
        {
            "source": params["source"],
            # the rule the fidelity figures below were measured with (None: the published rows themselves)
            "beat_end": params["beat_end"] if params["source"] == "wfdb" else None,
            "beats": len(beats),
            "records": int(beats["record"].nunique()),
            "classes": class_counts(beats["label"]),
            "fidelity": summarize(comparison),
        },
        args.metrics,
    )
    log.info("ingest: %d beats in %.1f s", len(beats), time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
