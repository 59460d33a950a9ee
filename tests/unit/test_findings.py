"""A recording's findings on beat sequences with known answers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ecgbeats.modelling.findings import SCHEMA, FindingsConfig, episodes, recording_findings


def sequence(classes: str, rr_s: float = 0.8, start_s: float = 1.0, **columns) -> pd.DataFrame:
    """Beats of the given classes (one letter each), ``rr_s`` apart."""
    times = start_s + rr_s * np.arange(len(classes))
    return pd.DataFrame({"time_s": times, "class_name": list(classes), **columns})


def test_isolated_couplets_and_runs_are_told_apart():
    beats = sequence("NNVNNVVNNVVVNNNNSNNSSNNSSSSN")
    found = recording_findings(beats, duration_s=30.0)
    v = found["ventricular"]
    assert (v["beats"], v["isolated"], v["couplets"], v["first_couplet_s"]) == (6, 1, 1, 1.0 + 0.8 * 5)
    assert v["runs"] == [{"start_s": 1.0 + 0.8 * 9, "beats": 3, "duration_s": 1.6, "rate_bpm": 75.0,
                          "sustained": False}]  # fmt: skip
    s = found["supraventricular"]
    assert (s["beats"], s["isolated"], s["couplets"], len(s["runs"]), s["runs"][0]["beats"]) == (7, 1, 1, 1, 4)


def test_a_ventricular_run_over_30_s_is_sustained():
    beats = sequence("NN" + "V" * 70 + "NN", rr_s=0.5)
    (run,) = recording_findings(beats, duration_s=40.0)["ventricular"]["runs"]
    assert run["beats"] == 70 and run["rate_bpm"] == 120.0 and run["sustained"] is True


def test_bigeminy_of_ten_beats_and_trigeminy():
    found = recording_findings(sequence("NNNN" + "NV" * 5 + "NNNN"), duration_s=20.0)["ventricular"]
    assert found["bigeminy"] == [{"start_s": 1.0 + 0.8 * 4, "end_s": 1.0 + 0.8 * 13, "cycles": 5}]
    assert found["trigeminy"] == [] and found["isolated"] == 5
    found = recording_findings(sequence("NN" + "NNV" * 4 + "NV"), duration_s=20.0)["ventricular"]
    assert [e["cycles"] for e in found["trigeminy"]] == [4] and found["bigeminy"] == []
    # two cycles are not an episode
    assert recording_findings(sequence("NNNVNVNNN"), duration_s=10.0)["ventricular"]["bigeminy"] == []


def test_a_pause_keeps_the_detectors_doubt():
    beats = sequence("NNNNN")
    beats.loc[3:, "time_s"] += 1.7  # 0.8 + 1.7 = 2.5 s before beat 3
    beats["rr_check"] = ["", "", "", "possible_missed_beat", ""]
    found = recording_findings(beats, duration_s=10.0)
    assert found["pauses"] == [{"start_s": 2.6, "length_s": 2.5, "doubt": "possible_missed_beat"}]
    assert recording_findings(beats, duration_s=10.0, config=FindingsConfig(pause_s=3.0))["pauses"] == []


def test_an_unanalysed_stretch_breaks_runs_pauses_and_intervals():
    beats = sequence("NNVV" + "VVNN")
    beats.loc[4:, "time_s"] += 10.0  # ten seconds not analysed between beats 3 and 4
    gap = (beats["time_s"].iat[3] + 0.2, beats["time_s"].iat[4] - 0.2, "noise")
    found = recording_findings(beats, duration_s=20.0, unanalysed=[gap])
    assert found["ventricular"]["couplets"] == 2 and found["ventricular"]["runs"] == []
    assert found["pauses"] == []
    assert found["analysed_s"] == pytest.approx(20.0 - (gap[1] - gap[0]))
    assert found["unanalysed"][0]["reason"] == "noise"


def test_atrial_fibrillation_episodes_and_burden():
    n = 200
    rhythm = [""] * 20 + ["irregular_no_p"] * 100 + [""] * 60 + ["irregular_no_p"] * 20
    beats = sequence("N" * n, rr_s=0.6, start_s=0.0, rhythm=rhythm)
    found = recording_findings(beats, duration_s=120.0)["atrial_fibrillation"]
    # the first stretch lasts 99 * 0.6 s; the second (11.4 s) is under the 30-s minimum
    assert found["episodes"] == [{"start_s": 12.0, "end_s": 71.4}]
    assert found["burden"] == pytest.approx(59.4 / 120.0, abs=1e-4)
    assert recording_findings(sequence("NNN"), duration_s=3.0)["atrial_fibrillation"] is None


def test_heart_rate_by_window_and_hour():
    fast = 0.5 * np.arange(120)  # 120 bpm for the first minute
    slow = 60.5 + 1.0 * np.arange(60)  # then 60 bpm
    beats = pd.DataFrame({"time_s": np.r_[fast, slow], "class_name": "N"})
    found = recording_findings(beats, duration_s=120.0)
    assert found["heart_rate"]["max_bpm"] == 120.0 and found["heart_rate"]["max_at_s"] == 0.0
    assert found["heart_rate"]["min_bpm"] == 60.0 and found["heart_rate"]["min_at_s"] == 60.0
    assert found["hourly"] == [{"hour": 0, "beats": 180, "V": 0, "S": 0, "rate_mean_bpm": 90.0,
                                "rate_min_bpm": 60.0, "rate_max_bpm": 120.0}]  # fmt: skip


def test_hrv_follows_the_definitions_and_skips_the_intervals_around_an_ectopic_beat():
    rr = 0.8 + np.random.default_rng(0).normal(0, 0.04, 300)
    times = np.cumsum(rr)
    classes = np.array(["N"] * 301)
    classes[150] = "V"  # the two intervals around it are not N-N
    beats = pd.DataFrame({"time_s": np.r_[0.0, times], "class_name": classes})
    hrv = recording_findings(beats, duration_s=float(times[-1]) + 1)["hrv"]
    nn = np.ones(300, dtype=bool)
    nn[149:151] = False
    ms = 1000.0 * rr
    succ = np.diff(ms)[nn[1:] & nn[:-1]]  # only between adjacent N-N intervals
    assert hrv["nn_intervals"] == 298
    assert hrv["sdnn_ms"] == pytest.approx(np.std(ms[nn], ddof=1), abs=0.01)
    assert hrv["rmssd_ms"] == pytest.approx(np.sqrt(np.mean(succ**2)), abs=0.01)
    # pNN50: successive differences over 50 ms, over the NN intervals (Task Force 1996)
    assert hrv["pnn50_percent"] == pytest.approx(100 * np.sum(np.abs(succ) > 50) / nn.sum(), abs=0.01)
    # NeuroKit2's hrv_time, given the intervals and their times, agrees on SDNN and RMSSD
    nk = pytest.importorskip("neurokit2")
    times_nn = times[nn]
    theirs = nk.hrv_time({"RRI": ms[nn], "RRI_Time": times_nn}, sampling_rate=1000)
    assert hrv["sdnn_ms"] == pytest.approx(float(theirs["HRV_SDNN"].iat[0]), abs=0.01)
    assert hrv["rmssd_ms"] == pytest.approx(float(theirs["HRV_RMSSD"].iat[0]), abs=0.01)


def test_the_findings_are_json_with_the_schema_name_and_bad_input_is_named():
    found = recording_findings(sequence("NNVNNSNN"), duration_s=8.0)
    assert json.loads(json.dumps(found))["schema"] == SCHEMA
    with pytest.raises(ValueError, match="class_name"):
        recording_findings(pd.DataFrame({"time_s": [1.0]}), duration_s=2.0)
    with pytest.raises(ValueError, match="time order"):
        recording_findings(pd.DataFrame({"time_s": [2.0, 1.0], "class_name": ["N", "N"]}), duration_s=3.0)
    twice = pd.DataFrame({"time_s": [1.0, 2.0, 2.0, 3.0], "class_name": ["N", "V", "V", "N"]})
    found = recording_findings(twice, duration_s=4.0)
    assert found["beats"]["total"] == 3 and found["ventricular"]["isolated"] == 1


def test_episodes_close_at_breaks():
    flags = np.array([1, 1, 0, 1, 1, 1], dtype=bool)
    breaks = np.array([1, 0, 0, 0, 1, 0], dtype=bool)
    assert episodes(flags, breaks) == [(0, 1), (3, 3), (4, 5)]
