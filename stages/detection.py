"""Stage detection: the service's QRS detection judged on every MIT-BIH record, at several sampling rates.

Detection is not learned, so every record is fair to judge it on. Each whole record, resampled to each
rate of ``detection.rates`` (``scipy.signal.resample_poly``, anti-aliased), goes through the service's
detection path: the strip quality check (``ecgbeats.processing.quality.assess``: spikes bridged) and
the R-peak detector (``ecgbeats.processing.detection.detect_r_peaks``), on both leads (``rates``) and
on the first lead alone (``first_lead_only``: a one-lead strip). The peaks are matched to every
annotated beat within 150 ms (EC57, ``ecgbeats.modelling.ec57``). Written per rate, gross and per
record: QRS Se and +P, the missed beats by AAMI class, the extra beats inside the annotated
ventricular flutter episodes (counted in ``qrs_+P``; ``qrs_+P_outside_flutter`` leaves them out, as
EC57's QRS figures do: only record 207 has such episodes), and the
false pauses (a detected RR of at least ``detection.pause_s`` that hides a reference beat: a dropout a
reader would take for a pause), with how many of them the answer flags (``rr_check``), and how many
flags fall on an interval that hides no beat.
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
from ecgbeats.processing.detection import detect_r_peaks, rr_checks
from ecgbeats.processing.quality import assess
from stages.common import load_params, setup_logging

log = logging.getLogger("stages.detection")


def flutter_episodes(samples: np.ndarray, symbols: np.ndarray) -> list[tuple[int, int]]:
    """The annotated ventricular flutter or fibrillation episodes, from each ``[`` to its ``]``."""
    episodes, start = [], None
    for sample, symbol in zip(samples, symbols, strict=True):
        if symbol == "[":
            start = int(sample)
        elif symbol == "]" and start is not None:
            episodes.append((start, int(sample)))
            start = None
    return episodes


def judge(
    leads: np.ndarray, fs: float, rate: int, reference: np.ndarray, symbols: np.ndarray, pause_s: float,
    flutter: list[tuple[int, int]],
) -> dict:  # fmt: skip
    """One record's leads at ``rate``: detection figures, missed beats by class, false pauses and the flags."""
    quality = assess(resample(leads, fs, rate), float(rate))
    found = detect_r_peaks(quality.signal, float(rate))
    first = quality.signal if quality.signal.ndim == 1 else quality.signal[:, 0]
    checks = rr_checks(first, float(rate), found, [(seg.start, seg.end) for seg in quality.unusable])
    detected = np.round(found * fs / rate).astype(np.int64)
    match = match_beats(reference, detected, fs, TOLERANCE_S)
    extra = np.ones(len(detected), dtype=bool)
    extra[match.detected] = False
    in_flutter = np.zeros(len(detected), dtype=bool)
    for start, stop in flutter:
        in_flutter |= (detected >= start) & (detected <= stop)
    pauses = false_pauses(reference, detected, fs, pause_s)
    closing = [int(np.argmin(np.abs(detected - p["start_s"] * fs))) + 1 for p in pauses]
    flagged = np.flatnonzero(checks != "")
    hides = [((reference > detected[i - 1] + TOLERANCE_S * fs) & (reference < detected[i] - TOLERANCE_S * fs)).any()
             for i in flagged]  # fmt: skip
    return {
        **detection_figures(len(reference), len(detected), len(match.reference)),
        "extra_in_flutter": int((extra & in_flutter).sum()),
        "missed_by_class": missed_by_class(symbols, match.reference),
        "false_pauses": len(pauses),
        "false_pause_hidden_beats": int(sum(p["hidden"] for p in pauses)),
        "false_pauses_flagged": int(sum(checks[i] != "" for i in closing)),
        "flags_hiding_no_beat": int(len(hides) - sum(hides)),
    }


def summarise(rows: list[dict]) -> dict:
    """Gross figures over the records of one rate and lead set, and each record's."""
    totals = [sum(int(r[k]) for r in rows) for k in ("reference_beats", "detected_beats", "matched")]
    counts = ("extra_in_flutter", "false_pauses", "false_pause_hidden_beats", "false_pauses_flagged",
              "flags_hiding_no_beat")  # fmt: skip
    extra_in_flutter = sum(r["extra_in_flutter"] for r in rows)
    return {
        "gross": {
            **detection_figures(*totals),
            # EC57's QRS +P, which leaves the ventricular flutter episodes out
            "qrs_+P_outside_flutter": round(totals[2] / max(totals[1] - extra_in_flutter, 1), 6),
            "missed_by_class": {c: sum(r["missed_by_class"][c] for r in rows) for c in (*CLASS_NAMES, "other")},
            **{k: sum(r[k] for r in rows) for k in counts},
        },
        "per_record": {r["record"]: {k: v for k, v in r.items() if k not in ("leads", "rate", "record")} for r in rows},
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
        flutter = flutter_episodes(rec.ann_samples, symbols)
        for leads, signal in (("both", rec.signal[:, :2]), ("first", rec.signal[:, 0])):
            for rate in rates:
                figures = judge(signal, rec.fs, rate, rec.ann_samples[is_beat], symbols[is_beat], pause_s, flutter)
                rows.append({"leads": leads, "rate": rate, "record": record, **figures})
    out: dict[str, object] = {"tolerance_s": TOLERANCE_S, "pause_s": pause_s, "records": len(records)}
    for leads, key in (("both", "rates"), ("first", "first_lead_only")):
        out[key] = {str(rate): summarise([r for r in rows if r["leads"] == leads and r["rate"] == rate])
                    for rate in rates}  # fmt: skip
        for rate in rates:
            gross = out[key][str(rate)]["gross"]  # type: ignore[index]
            log.info("%s leads, %d Hz: QRS Se %.4f +P %.4f, missed %s, false pauses %d (%d flagged)", leads, rate,
                     gross["qrs_Se"], gross["qrs_+P"], gross["missed_by_class"], gross["false_pauses"],
                     gross["false_pauses_flagged"])  # fmt: skip
    write_json(out, args.metrics)
    flat = [{k: v for k, v in r.items() if k != "missed_by_class"} | {f"missed_{c}": n for c, n in
             r["missed_by_class"].items()} for r in rows]  # fmt: skip
    write_csv(pd.DataFrame(flat), args.plots / "records.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
