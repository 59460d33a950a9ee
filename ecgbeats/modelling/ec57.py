"""Beat-by-beat evaluation of a whole analyser, as ANSI/AAMI EC57 tests arrhythmia detectors.

The analyser sees the raw record; each detected beat is matched to a reference beat within
``TOLERANCE_S`` (150 ms), using wfdb's ``compare_annotations``. QRS detection is scored over all
reference beats (Se: matched / reference, +P: matched / detected); the classes over the matched beats
with an AAMI class. Figures are gross (all beats of all records pooled) and per record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from wfdb.processing import compare_annotations

from ecgbeats.data.aami import CLASS_NAMES, SYMBOL_TO_LABEL
from ecgbeats.modelling.evaluation import evaluate_predictions

TOLERANCE_S = 0.15  # a detection within 150 ms of a reference beat is that beat (EC57)


@dataclass(frozen=True)
class Match:
    """Indices of matched pairs in the reference and the detected beats, and the counts around them."""

    reference: np.ndarray
    detected: np.ndarray
    n_reference: int
    n_detected: int

    @property
    def missed(self) -> int:
        return self.n_reference - len(self.reference)

    @property
    def extra(self) -> int:
        return self.n_detected - len(self.detected)


def match_beats(reference: np.ndarray, detected: np.ndarray, fs: float, tolerance_s: float = TOLERANCE_S) -> Match:
    """Pair detected beats with reference beats no more than ``tolerance_s`` apart (one-to-one)."""
    reference = np.asarray(reference, dtype=np.int64)
    detected = np.asarray(detected, dtype=np.int64)
    if len(reference) == 0 or len(detected) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Match(empty, empty, len(reference), len(detected))
    # compare_annotations accepts differences strictly below its window: floor(tolerance) + 1 samples
    comparison = compare_annotations(reference, detected, int(np.floor(tolerance_s * fs + 1e-9)) + 1)
    comparison.compare()
    return Match(
        np.asarray(comparison.matched_ref_inds, dtype=np.int64),
        np.asarray(comparison.matched_test_inds, dtype=np.int64),
        len(reference),
        len(detected),
    )


def detection_figures(n_reference: int, n_detected: int, n_matched: int) -> dict[str, Any]:
    return {
        "reference_beats": n_reference,
        "detected_beats": n_detected,
        "matched": n_matched,
        "missed": n_reference - n_matched,
        "extra": n_detected - n_matched,
        "qrs_Se": round(n_matched / n_reference, 6) if n_reference else None,
        "qrs_+P": round(n_matched / n_detected, 6) if n_detected else None,
    }


def class_figures(labels: np.ndarray, proba: np.ndarray) -> dict[str, Any]:
    """Accuracy, macro-F1 over N, S, V, F and Se/+P per class of matched beats."""
    report = evaluate_predictions(labels, proba, n_boot=0)
    return {
        "beats": report["beats"],
        "accuracy": report["accuracy"],
        "macro_f1_nsvf": report["macro_f1_nsvf"],
        "per_class": {
            c: {"Se": report["per_class"][c]["recall"], "+P": report["per_class"][c]["precision"],
                "support": report["per_class"][c]["support"]}
            for c in CLASS_NAMES
        },
    }  # fmt: skip


def missed_by_class(symbols: np.ndarray, matched: np.ndarray) -> dict[str, int]:
    """Reference beats never detected, by AAMI class (``other`` for beat symbols outside the classes):
    ``symbols`` of every reference beat, ``matched`` the indices of those a detection matched."""
    missed = np.ones(len(symbols), dtype=bool)
    missed[np.asarray(matched, dtype=np.int64)] = False
    out = {name: 0 for name in (*CLASS_NAMES, "other")}
    for symbol in np.asarray(symbols, dtype=object)[missed]:
        label = SYMBOL_TO_LABEL.get(str(symbol))
        out["other" if label is None else CLASS_NAMES[label]] += 1
    return out


def false_pauses(
    reference: np.ndarray, detected: np.ndarray, fs: float, pause_s: float, tolerance_s: float = TOLERANCE_S
) -> list[dict[str, float]]:
    """Detected RR intervals of at least ``pause_s`` that hold a reference beat (further than the matching
    tolerance from both ends): a detector dropout a reader would take for a pause. Each with its start
    (s), length (s) and the reference beats it hides."""
    reference = np.sort(np.asarray(reference, dtype=np.int64))
    detected = np.sort(np.asarray(detected, dtype=np.int64))
    out: list[dict[str, float]] = []
    slack = tolerance_s * fs
    for start, stop in zip(detected[:-1], detected[1:], strict=True):
        if (stop - start) / fs < pause_s:
            continue
        hidden = int(((reference > start + slack) & (reference < stop - slack)).sum())
        if hidden:
            out.append({"start_s": round(start / fs, 3), "length_s": round((stop - start) / fs, 3), "hidden": hidden})
    return out
