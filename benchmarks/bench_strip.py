"""Raw ECG end to end in one process: whole MIT-BIH records through ``Scorer.score_strip``.

    python -m benchmarks.bench_strip --model models/record-reference --raw data/raw/mitdb \\
        [--records 100 213] [--repeats 3] [--leads 1]

For each record, the best of ``--repeats`` runs of: R-peak detection (``ecgbeats.processing.detection``), the beat
measurement (``ecgbeats.features.record.record_features``) and the model; prints beats per second for
the whole path and for the path without detection, and the share of time in each step. The strip has
the record's two leads, as a device sends them (``--leads 1``: the first alone). The reference workload
(``benchmarks.common.ReferenceRun``) is measured before and after, and every rate is also printed per reference.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks.common import ReferenceRun, figure
from ecgbeats.data.aami import DS2
from ecgbeats.data.dataset import read_record_signals
from ecgbeats.modelling.bundle import load_bundle
from ecgbeats.serving import scoring
from ecgbeats.serving.scoring import Scorer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=Path("models/record-reference"))
    parser.add_argument("--raw", type=Path, default=Path("data/raw/mitdb"))
    parser.add_argument("--records", nargs="+", default=list(DS2[:6]))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--leads", type=int, choices=[1, 2], default=2, help="leads in the strip")
    args = parser.parse_args(argv)
    scorer = Scorer(load_bundle(args.model), num_threads=1)
    detect = scoring.detect_r_peaks
    totals = np.zeros(3)  # detection, the rest, beats
    reference = ReferenceRun()
    print(f"model {scorer.version} ({scorer.representation}), {len(args.records)} records, best of {args.repeats}",
          flush=True)  # fmt: skip
    rows = []  # printed after the second reference measurement, with the rates per reference
    for record in args.records:
        rec = read_record_signals(args.raw, record)
        leads = rec.signal[:, :2] if args.leads == 2 else rec.signal[:, 0]
        best = (np.inf, np.inf)
        for _ in range(args.repeats):
            start = time.perf_counter()
            peaks = detect(leads, rec.fs)
            detected = time.perf_counter()
            scoring.detect_r_peaks = lambda signal, fs, peaks=peaks: peaks  # the rest of the path alone
            try:
                result = scorer.score_strip(leads, rec.fs)
            finally:
                scoring.detect_r_peaks = detect
            done = time.perf_counter()
            best = min(best, (detected - start, done - detected), key=sum)
        beats = len(result.beats)
        totals += [*best, beats]
        rows.append((record, f"{len(leads) / rec.fs / 60:.1f}", beats, *best))
    detect_s, rest_s, beats = totals
    rows.append(("all", "", int(beats), detect_s, rest_s))
    reference.finish()
    print(f"{'record':>8} {'minutes':>8} {'beats':>7} {'detect s':>9} {'rest s':>8} {'beats/s':>9} {'beats/ref':>10}")
    for record, minutes, n, detect_s_, rest_s_ in rows:
        rate = n / (detect_s_ + rest_s_)
        print(f"{record:>8} {minutes:>8} {n:7d} {detect_s_:9.3f} {rest_s_:8.3f} {figure(rate):>9} "
              f"{figure(reference.per_reference(rate)):>10}")  # fmt: skip
    print(f"end to end {reference.rate(beats / (detect_s + rest_s), 'beats')}; without detection "
          f"{reference.rate(beats / rest_s, 'beats')}; detection {100 * detect_s / (detect_s + rest_s):.0f} % "
          "of the time")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
