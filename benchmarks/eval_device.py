"""How a record model's classes move when the device changes: gain and sampling rate, on DS1 records.

Recorders differ in gain and sampling rate. Each DS1 record (first lead, whole record) goes through the
service's strip path (``Scorer.score_strip``) as recorded, then scaled by each gain and resampled to
each rate (``scipy.signal.resample_poly``, anti-aliased); the beats are matched to the unchanged
record's within 50 ms, and the table gives the share of matched beats whose class changed, and the
changes by class. Two bundles can be compared side by side (``--model`` more than once).

    python -m benchmarks.eval_device --raw data/raw/mitdb --model models/record-ds1 [--model OTHER] \\
        [--out reports/figures/device.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ecgbeats.data.beats import resample
from ecgbeats.data.dataset import read_record_signals
from ecgbeats.modelling.bundle import load_bundle
from ecgbeats.modelling.ec57 import match_beats
from ecgbeats.serving.scoring import Scorer

DS1 = [
    *("101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122"),
    *("124", "201", "203", "205", "207", "208", "209", "215", "220", "223", "230"),
]
GAINS = (0.5, 2.0)
RATES = (128, 250, 500, 1000)


def classes(scorer: Scorer, signal: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """R-peak times (s) and class codes of the scored beats of a whole strip."""
    result = scorer.score_strip(signal, fs)
    return result.beats["time_s"].to_numpy(), result.predictions.codes


def moved(scorer: Scorer, records: list[str], raw: Path) -> dict[str, dict[str, object]]:
    totals: dict[str, dict[str, object]] = {}
    for record in records:
        rec = read_record_signals(raw, record)
        x = rec.signal[:, 0]
        base_t, base_c = classes(scorer, x, rec.fs)
        variants: dict[str, tuple[np.ndarray, float]] = {f"gain x{g:g}": (g * x, rec.fs) for g in GAINS}
        for rate in RATES:
            variants[f"{rate} Hz"] = (resample(x, rec.fs, rate), float(rate))
        for name, (signal, fs) in variants.items():
            t, c = classes(scorer, signal, fs)
            match = match_beats(np.round(base_t * 1000), np.round(t * 1000), 1000.0, 0.05)
            before, after = base_c[match.reference], c[match.detected]
            row = totals.setdefault(name, {"matched": 0, "changed": 0, "pairs": {}})
            row["matched"] = int(row["matched"]) + len(before)  # type: ignore[call-overload]
            row["changed"] = int(row["changed"]) + int((before != after).sum())  # type: ignore[call-overload]
            pairs: dict[str, int] = row["pairs"]  # type: ignore[assignment]
            names = scorer.class_names
            for b, a in zip(before[before != after], after[before != after], strict=True):
                key = f"{names[b]}->{names[a]}"
                pairs[key] = pairs.get(key, 0) + 1
        print(f"  {record}: {len(base_c)} beats", flush=True)
    for row in totals.values():
        row["changed_share"] = round(int(row["changed"]) / max(int(row["matched"]), 1), 5)  # type: ignore[call-overload]
        row["pairs"] = dict(sorted(row["pairs"].items(), key=lambda kv: -kv[1])[:6])  # type: ignore[attr-defined]
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, required=True, help="MIT-BIH directory")
    parser.add_argument("--model", type=Path, action="append", required=True, help="a record bundle (repeatable)")
    parser.add_argument("--records", nargs="*", default=DS1)
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    results = {}
    for path in args.model:
        scorer = Scorer(load_bundle(path), num_threads=1)
        print(f"{path} ({scorer.version}):", flush=True)
        results[str(path)] = moved(scorer, args.records, args.raw)
    print(f"\n| change | {' | '.join(str(p) for p in args.model)} |")
    print(f"|---|{'---|' * len(args.model)}")
    for name in next(iter(results.values())):
        cells = [
            f"{results[str(p)][name]['changed_share']:.2%} of {results[str(p)][name]['matched']:,} "
            f"({', '.join(f'{k} {v}' for k, v in results[str(p)][name]['pairs'].items())})"  # type: ignore[attr-defined]
            for p in args.model
        ]
        print(f"| {name} | {' | '.join(cells)} |")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
