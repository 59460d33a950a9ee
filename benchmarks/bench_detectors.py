"""QRS detectors compared on the MIT-BIH records: accuracy against the reference beats, and speed.

    python -m benchmarks.bench_detectors --raw data/raw/mitdb [--rates 250 360 500 1000] [--records 100 101]
        [--out rows.csv]; python -m benchmarks.bench_detectors --summarise rows-a.csv rows-b.csv

Each record's first signal (in mV) is resampled from 360 Hz to every rate of ``--rates`` (polyphase,
anti-aliased), each detector runs on the whole record once, and its beats are matched to the reference
beat annotations within 150 ms (``ecgbeats.modelling.ec57.match_beats``, as the EC57 stage does).
Printed per detector and rate: gross QRS Se and +P over all records, the number of records where the
detector failed (raised, or Se below 0.5), and samples per second of detection time.

Detectors: wfdb's XQRS and GQRS as wfdb ships them; XQRS compiled (``benchmarks/xqrs_compiled.py``:
its local-peak search and loops compiled, on the strip resampled to 360 Hz when its rate is higher);
GQRS compiled by numba (``ecgbeats.processing.gqrs``, its R peaks at the matched filter's peak);
NeuroKit2's default ``neurokit`` method (on its own cleaned signal, as its docs prescribe); sleepecg's
compiled detector; and the service's detector (``ecgbeats.processing.detection``: GQRS's candidates
checked against the beats before them and the second lead) on the first lead alone and on both leads.
Each compiled one is compared with wfdb's own where both ran on a record and rate (outside the timing;
XQRS at 360 Hz and below): the number of record-rates with the same output, sample for sample, is
printed. A second table gives each detector's errors at 360 Hz on DS1 (the training patients) and DS2
(the holdout) apart, with the missed beats by AAMI class and the false pauses (a detected RR of 2 s or
more that hides a reference beat). The reference workload (``benchmarks.common.ReferenceRun``) is measured
before and after the detectors run; its mean is kept in each row (``reference_ms``) and the speed is also given
per reference: samples per second x the reference's seconds, comparable between machines and runs.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks import xqrs_compiled
from benchmarks.common import ReferenceRun, figure
from ecgbeats.data.aami import BEAT_SYMBOLS, CLASS_NAMES, DS1, DS2
from ecgbeats.data.beats import resample
from ecgbeats.data.dataset import read_record_signals
from ecgbeats.data.mitdb import verify_directory
from ecgbeats.modelling.ec57 import false_pauses, match_beats, missed_by_class
from ecgbeats.processing import detection, gqrs


def xqrs(signal: np.ndarray, fs: float) -> np.ndarray:
    from wfdb.processing import XQRS, qrs
    from wfdb.processing.peaks import find_local_peaks

    qrs.find_local_peaks = find_local_peaks  # wfdb's own search (the service's detector swaps it)
    detector = XQRS(sig=signal, fs=fs)
    detector.detect(verbose=False)
    return np.asarray(detector.qrs_inds, dtype=np.int64)


def wfdb_gqrs(signal: np.ndarray, fs: float) -> np.ndarray:
    from wfdb.processing import gqrs_detect

    return np.asarray(gqrs_detect(sig=signal, fs=fs), dtype=np.int64)


def neurokit(signal: np.ndarray, fs: float) -> np.ndarray:
    import neurokit2 as nk

    cleaned = nk.ecg_clean(signal, sampling_rate=int(round(fs)), method="neurokit")
    return np.asarray(nk.ecg_findpeaks(cleaned, sampling_rate=int(round(fs)), method="neurokit")["ECG_R_Peaks"])


def sleepecg_c(signal: np.ndarray, fs: float) -> np.ndarray:
    from sleepecg import detect_heartbeats

    return np.asarray(detect_heartbeats(signal, fs), dtype=np.int64)


XQRS_COMPILED = "XQRS compiled"
GQRS_COMPILED = "GQRS compiled (numba)"
SERVICE_TWO_LEADS = "the service's, both leads"
DETECTORS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "wfdb XQRS": xqrs,
    XQRS_COMPILED: xqrs_compiled.detect_r_peaks,
    "wfdb GQRS": wfdb_gqrs,
    GQRS_COMPILED: gqrs.gqrs_peaks,
    "the service's, first lead": detection.detect_r_peaks,
    SERVICE_TWO_LEADS: detection.detect_r_peaks,
    "NeuroKit2 (neurokit)": neurokit,
    "sleepecg (C)": sleepecg_c,
}


def _in_range(peaks: np.ndarray, n: int) -> np.ndarray:
    peaks = np.unique(peaks)
    return peaks[(peaks >= 0) & (peaks < n)]


# a compiled detector, the wfdb one it must equal, and the outputs to compare (signal, rate, its, wfdb's)
SAME_AS: dict[str, tuple[str, Callable[[np.ndarray, float, np.ndarray, np.ndarray], bool | None]]] = {
    # above 360 Hz XQRS compiled detects on the strip resampled to 360 Hz: not the same beats by design
    XQRS_COMPILED: (
        "wfdb XQRS",
        lambda x, fs, ours, wfdb: np.array_equal(ours, _in_range(wfdb, len(x))) if fs <= 360 else None,
    ),
    GQRS_COMPILED: ("wfdb GQRS", lambda x, fs, ours, wfdb: np.array_equal(gqrs.gqrs(x, fs), wfdb)),
}
FAILED_SE = 0.5  # a record where a detector finds fewer than half of the beats counts as a failure


def measure(raw: Path, records: list[str], rates: list[float], detectors: list[str]) -> pd.DataFrame:
    """One row per (record, rate, detector): reference, detected and matched beats, missed beats by class,
    false pauses, detection seconds."""
    warm = read_record_signals(raw, records[0])
    for name in detectors:  # imports and first-call set-up are not detection time
        DETECTORS[name](warm.signal[: int(20 * warm.fs), :2] if name == SERVICE_TWO_LEADS else
                        warm.signal[: int(20 * warm.fs), 0], warm.fs)  # fmt: skip
    rows = []
    for number, record in enumerate(records, start=1):
        rec = read_record_signals(raw, record)
        symbols = np.asarray(rec.ann_symbols, dtype=object)
        is_beat = np.isin(symbols, list(BEAT_SYMBOLS))
        reference = rec.ann_samples[is_beat]
        for rate in rates:
            leads = resample(rec.signal[:, :2], rec.fs, rate)
            signal = leads[:, 0]
            ref = np.round(reference * rate / rec.fs).astype(np.int64)
            outputs: dict[str, np.ndarray] = {}
            for name in detectors:
                start = time.perf_counter()
                try:
                    found = DETECTORS[name](leads if name == SERVICE_TWO_LEADS else signal, rate)
                except Exception:  # a detector that fails on a record is scored as finding nothing
                    found = np.zeros(0, dtype=np.int64)
                peaks = np.unique(found)
                seconds = time.perf_counter() - start
                outputs[name] = found
                match = match_beats(ref, peaks, rate)
                missed = missed_by_class(symbols[is_beat], match.reference)
                rows.append({"record": record, "rate": rate, "detector": name, "reference": len(ref),
                             "detected": len(peaks), "matched": len(match.reference), "seconds": seconds,
                             "samples": len(signal), "identical_to_wfdb": None,
                             **{f"missed_{c}": missed[c] for c in CLASS_NAMES},
                             "false_pauses": len(false_pauses(ref, peaks, rate, 2.0))})  # fmt: skip
            for row in rows[-len(detectors) :]:
                if row["detector"] in SAME_AS and SAME_AS[row["detector"]][0] in outputs:
                    wfdb_name, same = SAME_AS[row["detector"]]
                    identical = same(signal, rate, outputs[row["detector"]], outputs[wfdb_name])
                    row["identical_to_wfdb"] = None if identical is None else bool(identical)
        print(f"[{number}/{len(records)}] record {record} done", flush=True)
    return pd.DataFrame(rows)


def summary(rows: pd.DataFrame) -> str:
    """The comparison table: gross Se and +P, failed records, and detection speed per detector and rate."""
    rows = rows.assign(failed=rows["matched"] < FAILED_SE * rows["reference"])
    # rows of older runs have no reference_ms: their speed is given per second only
    per_ref = "reference_ms" in rows and bool(rows["reference_ms"].notna().all())
    lines = ["| detector | Hz | records | reference beats | QRS Se | QRS +P | failed records | samples/s (millions) |"
             + (" samples/ref (millions) |" if per_ref else ""),
             "|---|---|---|---|---|---|---|---|" + ("---|" if per_ref else "")]  # fmt: skip
    for (rate, name), g in rows.groupby(["rate", "detector"], sort=True):
        se = g["matched"].sum() / g["reference"].sum()
        ppv = g["matched"].sum() / max(g["detected"].sum(), 1)
        lines.append(
            f"| {name} | {rate:g} | {g['record'].nunique()} | {int(g['reference'].sum()):,} | {se:.4f} | {ppv:.4f} | "
            f"{int(g['failed'].sum())} | {g['samples'].sum() / g['seconds'].sum() / 1e6:.2f} |"
            # seconds in units of each run's reference: the runs summed may come from different machines
            + (f" {figure(g['samples'].sum() / (g['seconds'] / g['reference_ms'] * 1000).sum() / 1e6)} |"
               if per_ref else "")
        )  # fmt: skip
    if "identical_to_wfdb" in rows:
        for name, (wfdb_name, _) in SAME_AS.items():
            compared = rows.loc[rows["detector"] == name, "identical_to_wfdb"].dropna()
            if len(compared):
                same = int(compared.astype(bool).sum())
                lines.append(f"\n{name}: the same beats as {wfdb_name} on {same} of {len(compared)} record-rates")
    at_360 = rows[rows["rate"] == 360]
    if len(at_360):
        lines += [
            "",
            "At 360 Hz, on every record and by set (DS1: the training patients; DS2: the holdout):",
            "",
            "| set | detector | records | QRS Se | QRS +P | missed | extra | errors | missed N / S / V / F / Q "
            "| false pauses |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for set_name, records in (("all", None), ("DS1", DS1), ("DS2", DS2)):
            part = at_360 if records is None else at_360[at_360["record"].isin(records)]
            for name, g in part.groupby("detector", sort=True):
                matched, reference, detected = g["matched"].sum(), g["reference"].sum(), g["detected"].sum()
                by_class = " / ".join(f"{int(g[f'missed_{c}'].sum())}" for c in CLASS_NAMES)
                lines.append(
                    f"| {set_name} | {name} | {g['record'].nunique()} | {matched / reference:.4f} | "
                    f"{matched / max(detected, 1):.4f} | {reference - matched:,} | {detected - matched:,} | "
                    f"{reference - matched + detected - matched:,} | {by_class} | {int(g['false_pauses'].sum())} |"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw", type=Path, default=Path("data/raw/mitdb"))
    parser.add_argument("--rates", type=float, nargs="+", default=[250.0, 360.0, 500.0, 1000.0])
    parser.add_argument("--records", nargs="+", help="default: every record of the directory")
    parser.add_argument("--detectors", nargs="+", choices=list(DETECTORS), default=list(DETECTORS))
    parser.add_argument("--out", type=Path, help="also write the per-record rows to this CSV")
    parser.add_argument("--summarise", type=Path, nargs="+", help="only print the table of these CSVs (--out)")
    args = parser.parse_args(argv)
    if args.summarise:
        rows = pd.concat([pd.read_csv(path, dtype={"record": str}) for path in args.summarise], ignore_index=True)
    else:
        reference = ReferenceRun()
        rows = measure(args.raw, args.records or verify_directory(args.raw), args.rates, args.detectors)
        reference.finish()
        rows["reference_ms"] = reference.ms
        if args.out:
            rows.to_csv(args.out, index=False)
    print(f"\n{rows['record'].nunique()} records, first signal (both for the service's two-lead detector), "
          "beats matched within 150 ms\n")  # fmt: skip
    print(summary(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
