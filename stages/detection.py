"""Stage detection: the service's QRS detection judged on every MIT-BIH record, at several sampling rates.

Detection is not learned, so every record is fair to judge it on. Each whole record's first lead,
resampled to each rate of ``detection.rates`` (``scipy.signal.resample_poly``, anti-aliased), goes
through the service's detection path: the strip quality check (``ecgbeats.processing.quality.assess``:
spikes bridged) and the R-peak detector (``ecgbeats.processing.detection.detect_r_peaks``). The peaks
are matched to every annotated beat within 150 ms (EC57, ``ecgbeats.modelling.ec57``). Written per rate,
gross and per record: QRS Se and +P, the missed beats by AAMI class, and the false pauses (a detected
RR of at least ``detection.pause_s`` that hides a reference beat: a dropout a reader would take for a
pause).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from ecgbeats.data.aami import BEAT_SYMBOLS, CLASS_NAMES
from ecgbeats.data.beats import resample
from ecgbeats.data.dataset import read_record_signals
from ecgbeats.data.mitdb import verify_directory
from ecgbeats.io import write_csv, write_json
from ecgbeats.modelling.ec57 import TOLERANCE_S, detection_figures, false_pauses, match_beats, missed_by_class
from ecgbeats.processing.detection import detect_r_peaks
from ecgbeats.processing.quality import assess
from stages.common import load_params, setup_logging

log = logging.getLogger("stages.detection")


def judge(lead: np.ndarray, fs: float, rate: int, reference: np.ndarray, symbols: np.ndarray, pause_s: float) -> dict:
    """One record's lead at ``rate``: detection figures, missed beats by class and false pauses (at ``fs``)."""
    quality = assess(resample(lead, fs, rate), float(rate))
    first = quality.signal if quality.signal.ndim == 1 else quality.signal[:, 0]
    detected = np.round(detect_r_peaks(first, float(rate)) * fs / rate).astype(np.int64)
    match = match_beats(reference, detected, fs, TOLERANCE_S)
    pauses = false_pauses(reference, detected, fs, pause_s)
    return {
        **detection_figures(len(reference), len(detected), len(match.reference)),
        "missed_by_class": missed_by_class(symbols, match.reference),
        "false_pauses": len(pauses),
        "false_pause_hidden_beats": int(sum(p["hidden"] for p in pauses)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", required=True, type=Path, help="verified MIT-BIH directory")
    parser.add_argument("--metrics", required=True, type=Path, help="detection metrics JSON")
    parser.add_argument("--plots", required=True, type=Path, help="directory for records.csv")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    setup_logging()
    records = sorted(verify_directory(args.raw, manifest_sha256=load_params("download", args.params)["sha256sums"]))
    params = load_params("detection", args.params)
    rates, pause_s = [int(r) for r in params["rates"]], float(params["pause_s"])
    rows = []
    for record in tqdm(records, desc="records", unit="record"):
        rec = read_record_signals(args.raw, record)
        symbols = np.asarray(rec.ann_symbols, dtype=object)
        is_beat = np.isin(symbols, list(BEAT_SYMBOLS))
        for rate in rates:
            figures = judge(rec.signal[:, 0], rec.fs, rate, rec.ann_samples[is_beat], symbols[is_beat], pause_s)
            rows.append({"rate": rate, "record": record, **figures})
    out: dict[str, object] = {"tolerance_s": TOLERANCE_S, "pause_s": pause_s, "records": len(records), "rates": {}}
    for rate in rates:
        here = [r for r in rows if r["rate"] == rate]
        totals = [sum(int(r[k]) for r in here) for k in ("reference_beats", "detected_beats", "matched")]
        missed = {c: sum(r["missed_by_class"][c] for r in here) for c in (*CLASS_NAMES, "other")}
        out["rates"][str(rate)] = {  # type: ignore[index]
            "gross": {**detection_figures(*totals), "missed_by_class": missed,
                      "false_pauses": sum(r["false_pauses"] for r in here),
                      "false_pause_hidden_beats": sum(r["false_pause_hidden_beats"] for r in here)},
            "per_record": {r["record"]: {k: v for k, v in r.items() if k not in ("rate", "record")} for r in here},
        }  # fmt: skip
        gross = out["rates"][str(rate)]["gross"]  # type: ignore[index]
        log.info("%d Hz: QRS Se %.4f +P %.4f, missed %s, false pauses %d", rate, gross["qrs_Se"], gross["qrs_+P"],
                 missed, gross["false_pauses"])  # fmt: skip
    write_json(out, args.metrics)
    flat = [{k: v for k, v in r.items() if k != "missed_by_class"} | {f"missed_{c}": n for c, n in
             r["missed_by_class"].items()} for r in rows]  # fmt: skip
    write_csv(pd.DataFrame(flat), args.plots / "records.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
