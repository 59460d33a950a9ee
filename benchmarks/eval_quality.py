"""The strip quality check on the 48 MIT-BIH records, clean and with added noise, and on no ECG at all.

For every record (first lead, whole record) and every condition, ``ecgbeats.processing.quality.assess``
judges the strip in 10-s windows; the table gives the share of windows called unusable, by reason,
and how many strips are refused outright. Then:

- spikes: a 50 mV pop each second on the first 5 minutes: R peaks found within 150 ms of the
  annotated beats by the service's detector, on the clean, the spiked, and the bridged signal;
- polarity: the first lead inverted, whole records: how often the service's strip path flips it back,
  and (with ``--model``, a record bundle) how many beats keep their class.

    python -m benchmarks.eval_quality --raw data/raw/mitdb [--model models/record]
"""

from __future__ import annotations

import argparse
import collections
import time
from pathlib import Path

import numpy as np
import wfdb

from ecgbeats.data.dataset import read_record_signals
from ecgbeats.modelling.bundle import load_bundle
from ecgbeats.modelling.ec57 import match_beats
from ecgbeats.processing.quality import QualityConfig, UnusableSignal, assess
from ecgbeats.serving.scoring import Scorer, detect_r_peaks

BEAT_SYMBOLS = set("NLRejAaJSVFE/fQ")


def conditions(x: np.ndarray, fs: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    t = np.arange(len(x)) / fs
    return {
        "clean": x,
        "+ noise SD 0.1 mV": x + rng.normal(0, 0.1, len(x)),
        "+ noise SD 0.3 mV": x + rng.normal(0, 0.3, len(x)),
        "+ noise SD 0.5 mV": x + rng.normal(0, 0.5, len(x)),
        "+ baseline wander 1 mV, 0.3 Hz": x + np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 2 * np.pi)),
        "+ gain x3": 3 * x,
        "Gaussian noise 1 mV, no ECG": rng.normal(0, 1.0, len(x)),
        "Gaussian noise 0.1 mV, no ECG": rng.normal(0, 0.1, len(x)),
        "flat line + 10 uV noise": rng.normal(0, 0.01, len(x)),
        "clipped noise (saturated)": np.clip(rng.normal(0, 1.0, len(x)), -0.5, 0.5),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, required=True, help="MIT-BIH directory")
    parser.add_argument("--model", type=Path, help="a record bundle: also score the inverted records (slow)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    records = (args.raw / "RECORDS").read_text().split()
    rng = np.random.default_rng(args.seed)
    windows: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    refused: collections.Counter[str] = collections.Counter()
    spike_rows, polarity = [], []
    started = time.perf_counter()
    for record in records:
        rec = wfdb.rdrecord(str(args.raw / record), channels=[0])
        x, fs = rec.p_signal[:, 0].astype(np.float64), float(rec.fs)
        for name, strip in conditions(x, fs, rng).items():
            try:
                quality = assess(strip, fs)
            except UnusableSignal as err:
                refused[name] += 1
                windows[name].update(err.verdicts)
                windows[name]["windows"] += len(err.verdicts)
                continue
            windows[name]["windows"] += quality.windows
            for seg in quality.unusable:
                if seg.reason != "spike":
                    windows[name][seg.reason] += 1
        # spikes, on the first 5 minutes
        n = int(300 * fs)
        ann = wfdb.rdann(str(args.raw / record), "atr", sampto=n)
        reference = np.asarray(ann.sample)[np.isin(ann.symbol, list(BEAT_SYMBOLS))]
        spiked = x[:n].copy()
        spiked[np.arange(int(0.5 * fs), n, int(fs))] += 50.0
        bridged = assess(spiked, fs).signal
        row = [record]
        for strip in (x[:n], spiked, bridged):
            found = detect_r_peaks(strip, fs)
            matched = len(match_beats(reference, found, fs, 0.15).reference)
            row.append(matched / len(reference))
        spike_rows.append(row)
        # polarity of the whole record, as the strip path sees it
        for sign in (1, -1):
            quality = assess(sign * x, fs)
            quality.orient(detect_r_peaks(sign * x, fs), QualityConfig())
            polarity.append((record, sign, quality.inverted, quality.qrs_ratio, quality.suspect))
    print(f"# strip quality on {len(records)} records ({time.perf_counter() - started:.0f} s)\n")
    print("| condition | 10-s windows | unusable | flat | saturated | noise | strips refused |")
    print("|---|---|---|---|---|---|---|")
    for name, counts in windows.items():
        total = counts["windows"]
        bad = counts["flat"] + counts["saturated"] + counts["noise"]
        print(
            f"| {name} | {total:,} | {bad / total:.1%} | {counts['flat']:,} | {counts['saturated']:,} | "
            f"{counts['noise']:,} | {refused[name]} of {len(records)} |"
        )
    se = np.array([r[1:] for r in spike_rows])
    print("\n| first 5 min, 50 mV pop each second | beats found (Se), pooled mean over records | worst record |")
    print("|---|---|---|")
    for i, name in enumerate(("clean", "spiked", "spiked, bridged")):
        print(f"| {name} | {se[:, i].mean():.4f} | {se[:, i].min():.4f} |")
    upright = [p for p in polarity if p[1] == 1]
    inverted = [p for p in polarity if p[1] == -1]
    for name, rows in (("as recorded", upright), ("first lead inverted", inverted)):
        flipped, suspect = sum(p[2] for p in rows), sum(p[4] for p in rows)
        print(
            f"\npolarity, {name}: {len(rows) - flipped - suspect} called upright, {suspect} reported as possibly "
            f"inverted, {flipped} flipped"
        )
    missed = [f"{p[0]} ({p[3]:.2f})" for p in inverted if not (p[2] or p[4])]
    print(f"inverted records not detected (their down/up ratio): {', '.join(missed) or 'none'}")
    if args.model:
        scorer = Scorer(load_bundle(args.model), num_threads=1)
        assert scorer.record_config is not None, "--model must be a record bundle"
        same = total = 0
        for record in records:
            rec = read_record_signals(args.raw, record)
            leads = rec.signal[:, : scorer.record_config.leads]
            flipped = leads.copy()
            flipped[:, 0] = -flipped[:, 0]
            a, b = scorer.score_strip(leads, rec.fs), scorer.score_strip(flipped, rec.fs)
            common, ia, ib = np.intersect1d(a.beats["r_peak"], b.beats["r_peak"], return_indices=True)
            same += int((a.predictions.codes[ia] == b.predictions.codes[ib]).sum())
            total += len(a.beats)
        print(f"record model: beats of the inverted records with the upright class: {same:,} of {total:,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
