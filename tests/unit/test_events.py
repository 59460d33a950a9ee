"""A recording's events against the reference's, matched by overlap as EC57 matches runs."""

from __future__ import annotations

import numpy as np
import pytest

from ecgbeats.modelling.ec57 import event_figures, gross_events, match_spans, overlap_s, rhythm_spans


def beats(classes: str, rr_s: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    return 1.0 + rr_s * np.arange(len(classes)), np.array(list(classes))


def test_spans_match_by_overlap_within_the_tolerance():
    reference = [(1.0, 2.0), (5.0, 6.0), (9.0, 9.5)]
    detected = [(1.5, 2.5), (6.1, 7.0), (20.0, 21.0)]
    got = match_spans(reference, detected, tolerance_s=0.15)
    assert (got["matched_reference"], got["matched_detected"]) == (2, 2)  # (5, 6) and (6.1, 7) are 0.1 s apart
    assert got["Se"] == pytest.approx(2 / 3) and got["+P"] == pytest.approx(2 / 3)
    assert match_spans([], detected)["Se"] is None and match_spans(reference, [])["+P"] is None


def test_rhythm_notes_give_the_atrial_fibrillation_stretches():
    samples = np.array([0, 3600, 7200, 10800])
    notes = ["(N", "(AFIB", "(N", "(AFL\x00"]
    assert rhythm_spans(samples, notes, 360.0, 60.0, ("(AFIB", "(AFL")) == [(10.0, 20.0), (30.0, 60.0)]
    assert overlap_s([(10.0, 20.0), (30.0, 60.0)], [(15.0, 35.0)]) == pytest.approx(10.0)


def test_a_records_events_and_their_pooling():
    reference = beats("NNVVNNNVVVNNNSSSNN" + "N" * 10)
    detected_classes = reference[1].copy()
    detected_classes[2:4] = "N"  # the couplet missed
    detected_classes[20:22] = "V"  # a couplet the reference does not have
    detected = (reference[0], detected_classes)
    breaks = np.zeros(len(detected_classes), dtype=bool)
    breaks[0] = True
    one = event_figures(reference, detected, breaks, [(0.0, 60.0)], [(10.0, 50.0)], pause_s=2.0, min_af_s=30.0)
    assert one["V_couplet"] == {"reference": 1, "detected": 1, "Se": 0.0, "+P": 0.0, "matched_reference": 0,
                                "matched_detected": 0}  # fmt: skip
    assert one["V_run"]["Se"] == 1.0 and one["S_run"]["Se"] == 1.0
    assert one["V_count"] == {"reference": 5, "detected": 5}
    assert one["AF_episode"]["Se"] == 1.0 and one["AF_time"]["overlap_s"] == pytest.approx(40.0)
    without = event_figures(reference, detected, breaks, [], None, pause_s=2.0, min_af_s=30.0)
    assert without["AF_episode"] is None and without["AF_time"] is None
    pooled = gross_events({"a": one, "b": without})
    assert pooled["V_couplet"]["reference"] == 2 and pooled["V_couplet"]["Se"] == 0.0
    assert pooled["AF_time"] == {"reference_s": 60.0, "detected_s": 40.0, "Se": pytest.approx(40 / 60),
                                     "+P": 1.0}  # fmt: skip
    assert pooled["V_count_mae_per_record"] == 0.0
