"""Beat-by-beat evaluation of a whole analyser, as ANSI/AAMI EC57 tests arrhythmia detectors.

The analyser sees the raw record; each detected beat is matched to a reference beat within
``TOLERANCE_S`` (150 ms), using wfdb's ``compare_annotations``. QRS detection is scored over all
reference beats (Se: matched / reference, +P: matched / detected); the classes over the matched beats
with an AAMI class. Figures are gross (all beats of all records pooled) and per record.

The events of a recording (``ecgbeats.modelling.findings``: couplets, runs, pauses, atrial
fibrillation) are matched to the same events of the reference annotations by overlap, as EC57 matches
runs (:func:`event_figures`, :func:`gross_events`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from wfdb.processing import compare_annotations

from ecgbeats.data.aami import CLASS_NAMES, SYMBOL_TO_LABEL
from ecgbeats.modelling.evaluation import evaluate_predictions
from ecgbeats.modelling.findings import episodes

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


# --- events: the findings of a recording against the reference annotations ---------------------------

AF_RHYTHMS = ("(AFIB", "(AFL")  # MIT-BIH rhythm notes of atrial fibrillation and flutter
Span = tuple[float, float]


def class_spans(times: np.ndarray, classes: np.ndarray, name: str, breaks: np.ndarray) -> list[tuple[Span, int]]:
    """Maximal runs of consecutive beats of class ``name``: ((first beat's time, last beat's time), beats)."""
    return [((float(times[a]), float(times[b])), b - a + 1) for a, b in episodes(classes == name, breaks)]


def pause_spans(times: np.ndarray, breaks: np.ndarray, pause_s: float) -> list[Span]:
    """RR intervals of at least ``pause_s`` between consecutive beats."""
    rr = np.diff(times)
    return [(float(times[i]), float(times[i + 1])) for i in np.flatnonzero((rr >= pause_s) & ~breaks[1:]).tolist()]


def rhythm_spans(
    samples: np.ndarray, notes: list[str], fs: float, end_s: float, rhythms: tuple[str, ...]
) -> list[Span]:
    """The annotated stretches of ``rhythms``: from a rhythm note of one of them to the next rhythm note
    (or the record's end). ``samples`` and ``notes`` are those of the rhythm annotations (``+``)."""
    out: list[Span] = []
    start: float | None = None
    for sample, note in zip(samples.tolist(), notes, strict=True):
        note = note.strip("\x00 ")
        if start is not None:
            out.append((start, sample / fs))
            start = None
        if note in rhythms:
            start = sample / fs
    if start is not None:
        out.append((start, end_s))
    return out


def match_spans(reference: list[Span], detected: list[Span], tolerance_s: float = TOLERANCE_S) -> dict[str, Any]:
    """Events matched by overlap (each span widened by ``tolerance_s``), as EC57 matches runs: Se is the
    share of reference events that a detected one overlaps, +P the share of detected events that a
    reference one overlaps."""

    def overlapped(spans: list[Span], others: list[Span]) -> int:
        return sum(any(a - tolerance_s <= d and c <= b + tolerance_s for c, d in others) for a, b in spans)

    hit_reference, hit_detected = overlapped(reference, detected), overlapped(detected, reference)
    return {
        "reference": len(reference), "detected": len(detected),
        "Se": round(hit_reference / len(reference), 6) if reference else None,
        "+P": round(hit_detected / len(detected), 6) if detected else None,
        "matched_reference": hit_reference, "matched_detected": hit_detected,
    }  # fmt: skip


def overlap_s(first: list[Span], second: list[Span]) -> float:
    """Seconds covered by both sets of (non-overlapping) spans."""
    return float(sum(max(0.0, min(b, d) - max(a, c)) for a, b in first for c, d in second))


def event_figures(
    reference: tuple[np.ndarray, np.ndarray],
    detected: tuple[np.ndarray, np.ndarray],
    detected_breaks: np.ndarray,
    reference_af: list[Span],
    detected_af: list[Span] | None,
    pause_s: float,
    min_af_s: float,
) -> dict[str, Any]:
    """One record's events, detected against reference: V couplets and runs (3 or more), S runs, pauses
    (matched by overlap), atrial fibrillation episodes of at least ``min_af_s`` (by overlap) and their
    duration (Se: the reference AF time the detected episodes cover; +P: the detected AF time that is
    reference AF), and the V and S counts. ``reference`` and ``detected`` are (times, classes) of the
    beats; ``detected_af`` is None for a model without a rhythm context."""
    ref_times, ref_classes = reference
    det_times, det_classes = detected
    ref_breaks = np.zeros(len(ref_times), dtype=bool)
    ref_breaks[:1] = True
    out: dict[str, Any] = {}
    for name in ("V", "S"):
        ref = class_spans(ref_times, ref_classes, name, ref_breaks)
        det = class_spans(det_times, det_classes, name, detected_breaks)
        kinds = {"couplet": lambda n: n == 2, "run": lambda n: n >= 3} if name == "V" else {"run": lambda n: n >= 3}
        for kind, wanted in kinds.items():
            out[f"{name}_{kind}"] = match_spans([s for s, n in ref if wanted(n)], [s for s, n in det if wanted(n)])
        out[f"{name}_count"] = {
            "reference": int((ref_classes == name).sum()),
            "detected": int((det_classes == name).sum()),
        }
    out["pause"] = match_spans(
        pause_spans(ref_times, ref_breaks, pause_s), pause_spans(det_times, detected_breaks, pause_s)
    )
    if detected_af is None:
        out["AF_episode"] = out["AF_time"] = None
    else:
        long_ref = [(a, b) for a, b in reference_af if b - a >= min_af_s]
        out["AF_episode"] = match_spans(long_ref, detected_af)
        out["AF_time"] = {
            "reference_s": round(sum(b - a for a, b in reference_af), 3),
            "detected_s": round(sum(b - a for a, b in detected_af), 3),
            "overlap_s": round(overlap_s(reference_af, detected_af), 3),
        }
    return out


def gross_events(per_record: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The events pooled over records: Se and +P from the summed matches; AF duration Se and +P from the
    summed seconds; the mean absolute error of the V and S counts per record."""
    records = list(per_record.values())
    out: dict[str, Any] = {}
    for key in ("V_couplet", "V_run", "S_run", "pause", "AF_episode"):
        parts = [r[key] for r in records if r.get(key) is not None]
        if not parts:
            out[key] = None
            continue
        sums = {k: sum(p[k] for p in parts) for k in ("reference", "detected", "matched_reference", "matched_detected")}
        out[key] = {
            "reference": sums["reference"], "detected": sums["detected"],
            "Se": round(sums["matched_reference"] / sums["reference"], 6) if sums["reference"] else None,
            "+P": round(sums["matched_detected"] / sums["detected"], 6) if sums["detected"] else None,
        }  # fmt: skip
    durations = [r["AF_time"] for r in records if r.get("AF_time") is not None]
    if durations:
        ref, det, both = (sum(d[k] for d in durations) for k in ("reference_s", "detected_s", "overlap_s"))
        out["AF_time"] = {
            "reference_s": round(ref, 3), "detected_s": round(det, 3),
            "Se": round(both / ref, 6) if ref else None, "+P": round(both / det, 6) if det else None,
        }  # fmt: skip
    else:
        out["AF_time"] = None
    for name in ("V", "S"):
        errors = [abs(r[f"{name}_count"]["detected"] - r[f"{name}_count"]["reference"]) for r in records]
        out[f"{name}_count_mae_per_record"] = round(float(np.mean(errors)), 3) if errors else None
    return out
