"""tsfresh extraction speed: the full EfficientFCParameters set against the frozen selection. Prints beats/s.

    python -m benchmarks.bench_tsfresh --settings data/interim/interpatient/features/tsfresh_settings.json \
        --beats data/processed/beats.parquet --full-beats 500 --selected-beats 10000

Both run through ``ecgbeats.features.tsfresh_features`` exactly as the features stage does (``n_jobs`` processes,
unpadded beats). The full set is slow, so it runs on fewer beats; the rate is per beat either way.
``--all`` also extracts the selection for every beat in ``--beats`` (the 109,446-beat figure) and
prints the peak resident memory of this process and its worker processes together, sampled while they run.
The reference workload (``benchmarks.common.ReferenceRun``) is measured before and after, and every rate is
printed per reference at the end.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil

from benchmarks.common import ReferenceRun
from ecgbeats.data.dataset import load_beats
from ecgbeats.features.tsfresh_features import TsfreshSettings, extract, extract_selected, time_calculators


def rate(beats: int, seconds: float) -> float:
    return beats / max(seconds, 1e-9)


def tree_rss(process: psutil.Process) -> int:
    """Resident bytes of ``process`` and all its descendants (tsfresh's pool workers) right now."""
    total = 0
    for proc in [process, *process.children(recursive=True)]:
        with suppress(psutil.NoSuchProcess):  # a worker that ended between listing and reading
            total += proc.memory_info().rss
    return total


@contextmanager
def peak_tree_rss(interval: float = 0.2) -> Iterator[dict[str, int]]:
    """Sample the process tree's resident memory while the block runs; ``peak["bytes"]`` is the largest sum."""
    peak = {"bytes": 0}
    done = threading.Event()
    me = psutil.Process()

    def sample() -> None:
        while not done.is_set():
            peak["bytes"] = max(peak["bytes"], tree_rss(me))
            done.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        done.set()
        thread.join()
        peak["bytes"] = max(peak["bytes"], tree_rss(me))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", required=True, type=Path, help="a features stage's tsfresh_settings.json")
    parser.add_argument("--beats", required=True, type=Path, help="a beat table (parquet)")
    parser.add_argument("--full-beats", type=int, default=500)
    parser.add_argument("--selected-beats", type=int, default=10_000)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--all", action="store_true", help="also extract the selection for every beat")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--calculators",
        type=int,
        default=0,
        metavar="BEATS",
        help="time every EfficientFCParameters calculator alone on this many beats",
    )
    parser.add_argument(
        "--drop",
        nargs="*",
        default=None,
        help="calculators the pipeline drops (features.tsfresh.drop_calculators), marked in the table",
    )
    args = parser.parse_args(argv)

    settings = TsfreshSettings.from_json(args.settings)
    beats = load_beats(args.beats).sample(frac=1.0, random_state=args.seed).reset_index(drop=True)
    reference = ReferenceRun()  # prints the machine, its cores and load
    print(f"n_jobs={args.n_jobs}")
    rates: dict[str, float] = {}  # printed per reference once the reference is measured again

    from tsfresh.feature_extraction import EfficientFCParameters

    part = beats.iloc[: args.full_beats]
    start = time.perf_counter()
    full = extract(part, EfficientFCParameters(), padding=settings.padding, n_jobs=args.n_jobs)
    full_rate = rate(len(part), time.perf_counter() - start)
    print(f"full EfficientFCParameters: {full.shape[1]} features, {len(part):,} beats, {full_rate:,.1f} beats/s")
    rates["full EfficientFCParameters"] = full_rate

    part = beats.iloc[: args.selected_beats]
    start = time.perf_counter()
    selected = extract_selected(part, settings, n_jobs=args.n_jobs)
    selected_rate = rate(len(part), time.perf_counter() - start)
    print(f"frozen selection: {selected.shape[1]} features, {len(part):,} beats, {selected_rate:,.1f} beats/s")
    rates["frozen selection"] = selected_rate
    print(f"ratio selected / full: {selected_rate / full_rate:.1f}x")

    # where the service runs it: in-process (n_jobs=0), one beat per call and one batch per call
    extract_selected(beats.iloc[:1], settings, n_jobs=0)  # warm-up: tsfresh's first call imports and sets up
    singles = []
    for i in range(30):
        start = time.perf_counter()
        extract_selected(beats.iloc[i : i + 1], settings, n_jobs=0)
        singles.append(time.perf_counter() - start)
    part = beats.iloc[:2000]
    start = time.perf_counter()
    extract_selected(part, settings, n_jobs=0)
    rates["in-process, one call"] = rate(len(part), time.perf_counter() - start)
    print(
        f"in-process (n_jobs=0): one beat median {1000 * sorted(singles)[15]:.1f} ms; "
        f"{len(part):,} beats in one call {rates['in-process, one call']:,.1f} beats/s"
    )

    if args.calculators:
        table = time_calculators(beats.iloc[: args.calculators], EfficientFCParameters(), padding=settings.padding)
        dropped = set(args.drop or ())
        print(f"\nper calculator, alone on {args.calculators} beats (slowest first; * = dropped by the pipeline):")
        for row in table.itertuples():
            mark = "*" if row.calculator in dropped else " "
            print(f" {mark} {row.calculator:<40} {row.features:>4} features {row.ms_per_beat:8.3f} ms/beat")
        kept = table[~table["calculator"].isin(dropped)]
        print(
            f"all: {table['ms_per_beat'].sum():.1f} ms/beat ({int(table['features'].sum())} features); "
            f"without the dropped: {kept['ms_per_beat'].sum():.1f} ms/beat ({int(kept['features'].sum())} features)"
        )

    if args.all:
        with peak_tree_rss() as peak:
            start = time.perf_counter()
            extract_selected(beats, settings, n_jobs=args.n_jobs, progress=True)
            seconds = time.perf_counter() - start
        print(f"all {len(beats):,} beats: {seconds:.1f} s ({rate(len(beats), seconds):,.1f} beats/s), "
              f"peak RSS of the process and its workers {peak['bytes'] / 2**20:,.0f} MiB, "
              f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
        rates[f"all {len(beats):,} beats"] = rate(len(beats), seconds)
    reference.finish()
    for label, value in rates.items():
        print(f"  {label}: {reference.rate(value, 'beats')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
