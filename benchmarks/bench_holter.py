"""A 24-hour Holter through the batch CLI: the 48 MIT-BIH records end to end, streamed vs whole.

    python -m benchmarks.bench_holter --model models/record-reference --mirror $MITDB_MIRROR [--records 100 101] \
        [--formats wfdb edf] [--modes streamed whole one-piece]

Concatenates the records (30 min each at 360 Hz; 48 make 24.07 h), both leads as ``ECG1`` and ``ECG2``
(the first is MLII in 46 records, V5 in 102 and 104), into one recording written as WFDB (format 16)
and as EDF into a temporary directory, cut to whole seconds (EDF data records of 1 s). Then scores it
with ``python -m ecgbeats.serving.batch``, one process per run, and prints for each run the beats,
wall seconds, beats per second and the process's peak resident memory (``os.wait4``'s ``ru_maxrss``;
the recording is built in another process, so the forked CLI does not start as a copy of it):

- ``streamed``: the CLI's default, read and scored in segments of ``--segment-seconds``;
- ``whole``: ``--whole``, the signal read at once and scored in the same segments (the same beats);
- ``one-piece``: ``--whole --segment-seconds 0``, the service's strip path on the whole day at once;
- ``findings``: streamed, with the recording's findings (``--findings``) and its HTML page (``--report``).

It also checks that streamed and whole give identical outputs, and how far the one-piece detection is
from the segmented one (beats matched within 150 ms, class agreement of the matched beats). The reference
workload (``benchmarks.common.ReferenceRun``) is measured before and after the runs, and each run's beats per
second is also printed per reference.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import ReferenceRun

ROOT = Path(__file__).resolve().parents[1]
GAIN = 200.0  # MIT-BIH's ADC units per mV
MODES = {
    "streamed": [],
    "whole": ["--whole"],
    "one-piece": ["--whole", "--segment-seconds", "0"],
    "findings": ["--findings", "{out}.json", "--report", "{out}.html"],  # streamed, with its findings and page
}


def build(mirror: Path, records: list[str], directory: Path, formats: list[str]) -> tuple[dict[str, Path], float]:
    """The concatenated recording in each format; returns the inputs and its duration in seconds."""
    import edfio
    import wfdb

    parts = []
    fs = None
    for record in records:
        rec = wfdb.rdrecord(str(mirror / record), channels=[0, 1])
        fs = fs or rec.fs
        if rec.fs != fs:
            raise SystemExit(f"record {record} is at {rec.fs} Hz, the others at {fs} Hz")
        parts.append(np.round(rec.p_signal * GAIN).astype(np.int16))
    assert fs is not None
    digital = np.concatenate(parts)
    digital = digital[: len(digital) // int(fs) * int(fs)]  # whole seconds: EDF data records of 1 s
    inputs: dict[str, Path] = {}
    if "wfdb" in formats:
        wfdb.wrsamp("holter", fs=fs, units=["mV", "mV"], sig_name=["ECG1", "ECG2"], d_signal=digital,
                    fmt=["16", "16"], adc_gain=[GAIN, GAIN], baseline=[0, 0], write_dir=str(directory))  # fmt: skip
        inputs["wfdb"] = directory / "holter"
    if "edf" in formats:
        low, high = int(digital.min()), int(digital.max())
        signals = [
            edfio.EdfSignal.from_digital(
                np.ascontiguousarray(digital[:, j]), fs, label=f"ECG{j + 1}", physical_dimension="mV",
                digital_range=(low, high), physical_range=(low / GAIN, high / GAIN),
            )
            for j in range(2)
        ]  # fmt: skip
        edfio.Edf(signals, data_record_duration=1.0).write(directory / "holter.edf")
        inputs["edf"] = directory / "holter.edf"
    return inputs, len(digital) / fs


def score(source: Path, out: Path, model: Path, extra: list[str], segment_s: float) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (kB) and stderr's last line of one batch CLI process."""
    extra = [arg.format(out=out.with_suffix("")) for arg in extra]
    args = [sys.executable, "-m", "ecgbeats.serving.batch", str(source), str(out), "--model", str(model),
            "--no-progress", "--segment-seconds", str(segment_s), *extra]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(args, stderr=err, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        lines = err.read().strip().splitlines()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {proc.returncode}: {lines[-1] if lines else ''}")
    return seconds, usage.ru_maxrss, lines[-1] if lines else ""


def agreement(a: pd.DataFrame, b: pd.DataFrame, tolerance: int) -> tuple[int, int, int, float]:
    """Beats of ``a`` matched in ``b`` within ``tolerance`` samples, unmatched each side, class agreement."""
    from wfdb.processing import compare_annotations

    result = compare_annotations(a["r_peak"].to_numpy(), b["r_peak"].to_numpy(), tolerance)
    matched_a = result.matched_ref_inds
    matched_b = result.matched_test_inds
    same = (a["class_name"].to_numpy()[matched_a] == b["class_name"].to_numpy()[matched_b]).mean()
    return int(result.tp), int(result.fn), int(result.fp), float(same)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models/record-reference"))
    parser.add_argument("--mirror", type=Path, default=Path(os.environ.get("MITDB_MIRROR", "data/raw/mitdb")))
    parser.add_argument("--records", nargs="+", default=None, help="default: the mirror's RECORDS (all 48)")
    parser.add_argument("--formats", nargs="+", choices=["wfdb", "edf"], default=["wfdb", "edf"])
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--segment-seconds", type=float, default=1800.0)
    args = parser.parse_args(argv)
    model = args.model.resolve()
    records = args.records or (args.mirror / "RECORDS").read_text().split()
    with tempfile.TemporaryDirectory(prefix="holter-") as tmp:
        directory = Path(tmp)
        start = time.perf_counter()
        # built in a child: a forked CLI process starts as a copy of this one, and ru_maxrss counts that copy
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            inputs, duration = pool.submit(build, args.mirror.resolve(), records, directory, args.formats).result()
        sizes = {fmt: sum(p.stat().st_size for p in directory.glob(f"holter*{'.edf' if fmt == 'edf' else '.dat'}"))
                 for fmt in inputs}  # fmt: skip
        written = ", ".join(f"{k} {v / 1e6:.0f} MB" for k, v in sizes.items())
        print(f"{len(records)} records concatenated: {duration / 3600:.2f} h at 360 Hz, 2 leads; written in "
              f"{time.perf_counter() - start:.0f} s ({written})")  # fmt: skip
        print(f"model {model}, segments of {args.segment_seconds:g} s, one batch CLI process per run")
        reference = ReferenceRun()
        rates: dict[tuple[str, str], float] = {}
        print(f"{'input':>6} {'mode':>10} {'beats':>8} {'seconds':>8} {'beats/s':>8} {'peak RSS MB':>12}")
        outputs: dict[tuple[str, str], pd.DataFrame] = {}
        for fmt, source in inputs.items():
            for mode in args.modes:
                out = directory / f"{fmt}-{mode}.parquet"
                seconds, rss_kb, _ = score(source, out, model, MODES[mode], args.segment_seconds)
                table = pd.read_parquet(out, columns=["r_peak", "class_name", "p_N"])
                outputs[(fmt, mode)] = table
                rates[(fmt, mode)] = len(table) / seconds
                print(f"{fmt:>6} {mode:>10} {len(table):8d} {seconds:8.1f} {len(table) / seconds:8.0f} "
                      f"{rss_kb / 1024:12.0f}", flush=True)  # fmt: skip
        reference.finish()
        for (fmt, mode), rate in rates.items():
            print(f"{fmt:>6} {mode:>10} {reference.rate(rate, 'beats')}")
        first = next((k for k in outputs if k[1] == "streamed"), None)
        for key, table in outputs.items():
            if first is None or key == first:
                continue
            name = f"{key[0]} {key[1]} vs {first[0]} {first[1]}"
            if key[1] != "one-piece":  # streamed, whole and findings score the same beats
                same = table.equals(outputs[first])
                print(f"{name}: {'identical' if same else 'DIFFERENT'} (r_peak, class_name, p_N)")
            else:
                tp, fn, fp, agree = agreement(outputs[first], table, int(0.15 * 360))
                print(f"{name}: {tp} beats within 150 ms of each other, {fn} only streamed, {fp} only one-piece; "
                      f"the matched beats' classes agree in {100 * agree:.2f} %")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
