"""Regenerate tests/fixtures/mitdb: three-minute excerpts of six MIT-BIH records.

The excerpts keep the original format-212 samples and reference annotations, so tests read them
with wfdb exactly like the full records. Together they hold N, S, V, F and Q beats, DS1 records
with every class but Q (validation by whole records), DS2 records (holdout) and a paced record.

    python scripts/make_fixtures.py --mirror "$MITDB_MIRROR" --out tests/fixtures/mitdb
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import tempfile
from pathlib import Path

import wfdb

FS = 360
SECONDS = 180
# record -> excerpt start (s), chosen for class diversity within three minutes
EXCERPTS = {"124": 160, "201": 1020, "208": 900, "213": 340, "217": 630, "232": 0}


def write_excerpt(mirror: Path, out: Path, record: str, start_s: int) -> None:
    start, stop = start_s * FS, (start_s + SECONDS) * FS
    rec = wfdb.rdrecord(str(mirror / record), sampfrom=start, sampto=stop, physical=False)
    wfdb.wrsamp(
        record,
        fs=rec.fs,
        units=rec.units,
        sig_name=rec.sig_name,
        d_signal=rec.d_signal,
        fmt=rec.fmt,
        adc_gain=rec.adc_gain,
        baseline=rec.baseline,
        comments=[*rec.comments, f"excerpt: samples {start}-{stop} of MIT-BIH record {record}"],
        write_dir=str(out),
    )
    ann = wfdb.rdann(str(mirror / record), "atr", sampfrom=start, sampto=stop - 1, shift_samps=True)
    wfdb.wrann(
        record,
        "atr",
        ann.sample,
        symbol=ann.symbol,
        subtype=ann.subtype,
        chan=ann.chan,
        num=ann.num,
        aux_note=ann.aux_note,
        fs=rec.fs,
        write_dir=str(out),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mirror", required=True, type=Path, help="full MIT-BIH directory")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for record, start_s in EXCERPTS.items():
            write_excerpt(args.mirror, work, record, start_s)
        (work / "RECORDS").write_text("".join(f"{r}\n" for r in EXCERPTS))
        lines = []
        for path in sorted(work.iterdir()):
            lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()} {path.name}\n")
        (work / "SHA256SUMS.txt").write_text("".join(lines))
        if args.out.exists():
            shutil.rmtree(args.out)
        shutil.copytree(work, args.out)
    print(f"wrote {len(EXCERPTS)} excerpts to {args.out}")


if __name__ == "__main__":
    main()
