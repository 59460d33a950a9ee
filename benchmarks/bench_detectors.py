"""QRS detectors compared on the MIT-BIH records: accuracy against the reference beats, and speed.

    python -m benchmarks.bench_detectors --raw data/raw/mitdb [--rates 250 360 500 1000] [--records 100 101]

Each record's first signal (in mV) is resampled from 360 Hz to every rate of ``--rates`` (polyphase,
anti-aliased), each detector runs on the whole record once, and its beats are matched to the reference
beat annotations within 150 ms (``ecgbeats.modelling.ec57.match_beats``, as the EC57 stage does).
Printed per detector and rate: gross QRS Se and +P over all records, the number of records where the
detector failed (raised, or Se below 0.5), and samples per second of detection time.

Detectors: wfdb's XQRS (the service's) and GQRS, NeuroKit2's default ``neurokit`` method (on its own
cleaned signal, as its docs prescribe), and sleepecg's compiled detector.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from ecgbeats.data.aami import BEAT_SYMBOLS
from ecgbeats.data.dataset import read_record_signals
from ecgbeats.data.mitdb import verify_directory
from ecgbeats.modelling.ec57 import match_beats


def xqrs(signal: np.ndarray, fs: float) -> np.ndarray:
    from wfdb.processing import XQRS

    detector = XQRS(sig=signal, fs=fs)
    detector.detect(verbose=False)
    return np.asarray(detector.qrs_inds, dtype=np.int64)


def gqrs(signal: np.ndarray, fs: float) -> np.ndarray:
    from wfdb.processing import gqrs_detect

    return np.asarray(gqrs_detect(sig=signal, fs=fs), dtype=np.int64)


def neurokit(signal: np.ndarray, fs: float) -> np.ndarray:
    import neurokit2 as nk

    cleaned = nk.ecg_clean(signal, sampling_rate=int(round(fs)), method="neurokit")
    return np.asarray(nk.ecg_findpeaks(cleaned, sampling_rate=int(round(fs)), method="neurokit")["ECG_R_Peaks"])


def sleepecg_c(signal: np.ndarray, fs: float) -> np.ndarray:
    from sleepecg import detect_heartbeats

    return np.asarray(detect_heartbeats(signal, fs), dtype=np.int64)


DETECTORS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "wfdb XQRS": xqrs,
    "wfdb GQRS": gqrs,
    "NeuroKit2 (neurokit)": neurokit,
    "sleepecg (C)": sleepecg_c,
}
FAILED_SE = 0.5  # a record where a detector finds fewer than half of the beats counts as a failure


def resampled(signal: np.ndarray, fs: float, rate: float) -> np.ndarray:
    if rate == fs:
        return signal
    ratio = Fraction(rate) / Fraction(fs).limit_denominator(10_000)
    return resample_poly(signal, ratio.numerator, ratio.denominator)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw", type=Path, default=Path("data/raw/mitdb"))
    parser.add_argument("--rates", type=float, nargs="+", default=[250.0, 360.0, 500.0, 1000.0])
    parser.add_argument("--records", nargs="+", help="default: every record of the directory")
    parser.add_argument("--detectors", nargs="+", choices=list(DETECTORS), default=list(DETECTORS))
    args = parser.parse_args(argv)
    records = args.records or verify_directory(args.raw)
    warm = read_record_signals(args.raw, records[0])
    for name in args.detectors:  # imports and first-call set-up are not detection time
        DETECTORS[name](warm.signal[: int(20 * warm.fs), 0], warm.fs)
    # (detector, rate) -> reference, detected, matched, failed records, detection seconds, samples
    totals: dict[tuple[str, float], np.ndarray] = {}
    for number, record in enumerate(records, start=1):
        rec = read_record_signals(args.raw, record)
        symbols = np.asarray(rec.ann_symbols)
        reference = rec.ann_samples[np.isin(symbols, list(BEAT_SYMBOLS))]
        for rate in args.rates:
            signal = resampled(rec.signal[:, 0], rec.fs, rate)
            ref = np.round(reference * rate / rec.fs).astype(np.int64)
            for name in args.detectors:
                start = time.perf_counter()
                try:
                    peaks = DETECTORS[name](signal, rate)
                except Exception:  # a detector that fails on a record is scored as finding nothing
                    peaks = np.zeros(0, dtype=np.int64)
                seconds = time.perf_counter() - start
                match = match_beats(ref, np.unique(peaks), rate)
                failed = len(match.reference) < FAILED_SE * len(ref)
                row = [len(ref), len(np.unique(peaks)), len(match.reference), failed, seconds, len(signal)]
                totals[(name, rate)] = totals.get((name, rate), np.zeros(6)) + row
        print(f"[{number}/{len(records)}] record {record} done", flush=True)
    print(f"\n{len(records)} records, first signal, beats matched within 150 ms\n")
    print("| detector | Hz | reference beats | QRS Se | QRS +P | failed records | samples/s (millions) |")
    print("|---|---|---|---|---|---|---|")
    for (name, rate), (n_ref, n_det, n_match, failed, seconds, samples) in totals.items():
        print(f"| {name} | {rate:g} | {int(n_ref):,} | {n_match / n_ref:.4f} | {n_match / max(n_det, 1):.4f} | "
              f"{int(failed)} | {samples / seconds / 1e6:.2f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
