"""Stage ec57: the record model as a whole analyser on the DS2 patients' raw records.

Each whole record goes through the service's own strip path (``Scorer.score_strip``: R-peak detection
on both leads, the record measurement, the model); each detected beat is matched to a reference beat
within 150 ms (``ecgbeats.modelling.ec57``). QRS detection and class figures, gross and per record.
Then the recording's findings (``ecgbeats.modelling.findings``) against the reference's own: V couplets
and runs, S runs, pauses, atrial fibrillation episodes and time (from the rhythm notes ``(AFIB`` and
``(AFL``), and the V and S counts (``--events``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import wfdb
from tqdm import tqdm

from ecgbeats.data.aami import BEAT_SYMBOLS, CLASS_NAMES, DS2, SYMBOL_TO_LABEL
from ecgbeats.data.dataset import RecordSignals, read_record_signals
from ecgbeats.data.mitdb import verify_directory
from ecgbeats.io import write_csv, write_json
from ecgbeats.modelling.bundle import load_bundle
from ecgbeats.modelling.ec57 import (
    AF_RHYTHMS,
    TOLERANCE_S,
    class_figures,
    detection_figures,
    event_figures,
    gross_events,
    match_beats,
    rhythm_spans,
)
from ecgbeats.modelling.findings import FindingsConfig, breaks_at, recording_findings
from ecgbeats.serving.scoring import Scorer, StripResult, unanalysed_stretches
from stages.common import load_params, setup_logging

log = logging.getLogger("stages.ec57")


def score_record(
    scorer: Scorer, directory: Path, record: str
) -> tuple[dict[str, object], np.ndarray, np.ndarray, dict[str, object]]:
    """Detection figures of one record, the labels and probabilities of its matched AAMI beats, and its
    events against the reference's."""
    rec = read_record_signals(directory, record)
    result = scorer.score_strip(rec.signal[:, :2], rec.fs)  # both leads, as a device sends them
    symbols = np.asarray(rec.ann_symbols, dtype=object)
    is_beat = np.isin(symbols, list(BEAT_SYMBOLS))
    reference, ref_symbols = rec.ann_samples[is_beat], symbols[is_beat]
    detected = result.beats["r_peak"].to_numpy()
    match = match_beats(reference, detected, rec.fs, TOLERANCE_S)
    aami = np.isin(ref_symbols[match.reference], list(SYMBOL_TO_LABEL))
    labels = np.array([SYMBOL_TO_LABEL[s] for s in ref_symbols[match.reference][aami]], dtype=np.int64)
    proba = result.predictions.probabilities[match.detected[aami]]
    return (detection_figures(len(reference), len(detected), len(match.reference)), labels, proba,
            record_events(rec, directory / record, result, is_beat))  # fmt: skip


def record_events(rec: RecordSignals, base: Path, result: StripResult, is_beat: np.ndarray) -> dict[str, object]:
    """The record's findings (as the batch CLI gives them) against the reference annotations' events;
    ``is_beat`` marks the annotations that are beats."""
    config = FindingsConfig()
    symbols = np.asarray(rec.ann_symbols, dtype=object)
    names = np.array([CLASS_NAMES[SYMBOL_TO_LABEL[s]] if s in SYMBOL_TO_LABEL else "other" for s in symbols[is_beat]])
    notes = wfdb.rdann(str(base), "atr").aux_note  # the rhythm notes, beside the beat symbols
    rhythm = symbols == "+"
    end_s = len(rec.signal) / rec.fs
    reference_af = rhythm_spans(rec.ann_samples[rhythm], [notes[i] for i in np.flatnonzero(rhythm)], rec.fs, end_s,
                                AF_RHYTHMS)  # fmt: skip
    beats = result.beats.assign(class_name=result.predictions.names)
    unanalysed = unanalysed_stretches(result.quality.unusable, rec.fs)
    found = recording_findings(beats, end_s, unanalysed, config)
    times = beats["time_s"].to_numpy(dtype=np.float64)
    af = found["atrial_fibrillation"]
    return event_figures(
        (rec.ann_samples[is_beat] / rec.fs, names), (times, beats["class_name"].astype(str).to_numpy()),
        breaks_at(times, [(a, b) for a, b, _ in unanalysed]), reference_af,
        None if af is None else [(e["start_s"], e["end_s"]) for e in af["episodes"]], config.pause_s, config.min_af_s,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, type=Path, help="record bundle (train_record stage, DS1 only)")
    parser.add_argument("--raw", required=True, type=Path, help="verified MIT-BIH directory")
    parser.add_argument("--metrics", required=True, type=Path, help="EC57 metrics JSON")
    parser.add_argument("--plots", required=True, type=Path, help="directory for records.csv and confusion.csv")
    parser.add_argument("--events", required=True, type=Path, help="events metrics JSON")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    setup_logging()
    present = verify_directory(args.raw, manifest_sha256=load_params("download", args.params)["sha256sums"])
    records = [r for r in DS2 if r in present]
    scorer = Scorer(load_bundle(args.model), num_threads=1)
    rows, all_labels, all_proba, events = [], [], [], {}
    totals = np.zeros(3, dtype=np.int64)  # reference, detected, matched
    for record in tqdm(records, desc="DS2 records", unit="record"):
        detection, labels, proba, events[record] = score_record(scorer, args.raw, record)
        totals += [detection["reference_beats"], detection["detected_beats"], detection["matched"]]
        classes = class_figures(labels, proba)
        rows.append({"record": record, **detection, "accuracy": classes["accuracy"],
                     **{f"{c}_{k}": classes["per_class"][c][k] for c in ("S", "V") for k in ("Se", "+P")}})  # fmt: skip
        all_labels.append(labels)
        all_proba.append(proba)
    labels, proba = np.concatenate(all_labels), np.concatenate(all_proba)
    gross = {**detection_figures(*map(int, totals)), **class_figures(labels, proba)}
    write_json({"tolerance_s": TOLERANCE_S, "records": len(records), "gross": gross,
                "per_record": {row["record"]: {k: v for k, v in row.items() if k != "record"} for row in rows}},
               args.metrics)  # fmt: skip
    write_csv(pd.DataFrame(rows), args.plots / "records.csv")
    names = np.array(CLASS_NAMES)
    write_csv(pd.DataFrame({"actual": names[labels], "predicted": names[proba.argmax(axis=1)]}),
              args.plots / "confusion.csv")  # fmt: skip
    gross_ev = gross_events(events)
    write_json({"tolerance_s": TOLERANCE_S, "findings": FindingsConfig().to_dict(), "records": len(records),
                "gross": gross_ev, "per_record": events}, args.events)  # fmt: skip
    log.info("events: %s", {k: (v["Se"], v["+P"]) for k, v in gross_ev.items() if isinstance(v, dict) and "Se" in v})
    log.info("EC57 over %d records: QRS Se %.4f +P %.4f; accuracy %.4f, macro-F1 NSVF %.4f", len(records),
             gross["qrs_Se"], gross["qrs_+P"], gross["accuracy"], gross["macro_f1_nsvf"])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
