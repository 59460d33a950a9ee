"""QRS detection judged as EC57 judges it: missed beats by class and false pauses, on known beats, and
the detection stage on a fixture record."""

from __future__ import annotations

import numpy as np

from ecgbeats.data.aami import BEAT_SYMBOLS
from ecgbeats.data.dataset import read_record_signals
from ecgbeats.modelling.ec57 import false_pauses, match_beats, missed_by_class
from stages.detection import flutter_episodes, judge
from tests.conftest import FIXTURE_MIRROR

FS = 360


def test_missed_beats_are_counted_by_their_class():
    symbols = np.array(["N", "V", "N", "A", "V", "F", "Q", "+", "N"], dtype=object)
    matched = np.array([0, 2, 5, 8])
    assert missed_by_class(symbols, matched) == {"N": 0, "S": 1, "V": 2, "F": 0, "Q": 1, "other": 1}


def test_a_long_detected_interval_is_a_false_pause_only_when_it_hides_a_beat():
    reference = np.array([0, 360, 720, 1080, 1440, 2880, 3240]) + 100  # a true 4-s pause from 1540 to 2980
    detected = np.delete(reference, 2) + 3  # the beat at 820 is missed: 460 -> 1183 is 2.0 s and hides it
    pauses = false_pauses(reference, detected, FS, pause_s=2.0)
    assert pauses == [{"start_s": round(463 / FS, 3), "length_s": round(720 / FS, 3), "hidden": 1}]
    # the true pause is long but empty; under 2 s nothing counts
    assert false_pauses(reference, reference, FS, pause_s=2.0) == []
    assert false_pauses(reference, detected, FS, pause_s=2.5) == []


def test_the_service_detection_on_a_fixture_record_is_judged_at_every_rate():
    rec = read_record_signals(FIXTURE_MIRROR, "208")
    symbols = np.asarray(rec.ann_symbols, dtype=object)
    is_beat = np.isin(symbols, list(BEAT_SYMBOLS))
    reference = rec.ann_samples[is_beat]
    at_360 = judge(rec.signal, rec.fs, 360, reference, symbols[is_beat], 2.0, [])
    assert at_360["reference_beats"] == len(reference)
    assert at_360["reference_beats"] - at_360["matched"] == sum(at_360["missed_by_class"].values())
    assert at_360["qrs_Se"] > 0.9 and at_360["qrs_+P"] > 0.9
    at_250 = judge(rec.signal, rec.fs, 250, reference, symbols[is_beat], 2.0, [])
    assert abs(at_250["matched"] - at_360["matched"]) < 0.05 * len(reference)
    # the peaks are judged at the record's own rate whatever the detection's: a matched count is a count of
    # reference beats, the same ones EC57 matches
    assert at_250["reference_beats"] == at_360["reference_beats"]
    assert match_beats(reference, reference, rec.fs).missed == 0
    # one lead alone is judged the same way
    alone = judge(rec.signal[:, 0], rec.fs, 360, reference, symbols[is_beat], 2.0, [])
    assert alone["reference_beats"] == len(reference) and alone["qrs_Se"] > 0.9


def test_extra_beats_inside_a_flutter_episode_are_counted_apart():
    samples = np.array([100, 500, 900, 1300, 1700])
    symbols = np.array(["N", "[", "!", "]", "N"], dtype=object)
    assert flutter_episodes(samples, symbols) == [(500, 1300)]
    rec = read_record_signals(FIXTURE_MIRROR, "213")
    symbols = np.asarray(rec.ann_symbols, dtype=object)
    is_beat = np.isin(symbols, list(BEAT_SYMBOLS))
    reference = rec.ann_samples[is_beat]
    plain = judge(rec.signal, rec.fs, 360, reference, symbols[is_beat], 2.0, [])
    # the reference beats of a stretch removed, as a flutter episode holds none: what is found there is extra
    cut = (reference > 10 * FS) & (reference < 20 * FS)
    figures = judge(rec.signal, rec.fs, 360, reference[~cut], symbols[is_beat][~cut], 2.0, [(10 * FS, 20 * FS)])
    assert figures["extra"] - plain["extra"] == int(cut.sum())
    assert figures["extra_in_flutter"] == int(cut.sum())
