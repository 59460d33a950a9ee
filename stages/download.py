"""Stage download: MIT-BIH from PhysioNet, or from $MITDB_MIRROR, verified against SHA256SUMS.txt."""

from __future__ import annotations

import argparse
import os
import sys

from ecgbeats.data.mitdb import MIRROR_ENV, DataIntegrityError, FetchError, fetch_mitdb
from stages.common import load_params, setup_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="destination directory, e.g. data/raw/mitdb")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    setup_logging()
    params = load_params("download", args.params)
    try:
        fetch_mitdb(
            args.out,
            mirror=os.environ.get(MIRROR_ENV) or None,
            base_url=params["base_url"],
            manifest_sha256=params.get("sha256sums"),
            timeout=float(params["timeout"]),
        )
    except (FetchError, DataIntegrityError) as err:
        print(f"download failed: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
