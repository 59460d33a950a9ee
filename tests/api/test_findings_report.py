"""The batch CLI's findings (JSON) and report (HTML) of a recording: the same beats as its predictions,
the unanalysed stretches said, the same findings streamed or whole, and clear refusals."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import wfdb

from ecgbeats.data.dataset import read_record_signals
from ecgbeats.modelling.findings import SCHEMA, recording_findings
from ecgbeats.serving import batch
from ecgbeats.serving.findings_report import strips_to_show
from tests.api.test_record_model import record_bundle  # noqa: F401 (fixture: a record bundle on the fixtures)
from tests.conftest import FIXTURE_MIRROR

RECORD = "208"  # frequent PVCs, couplets and runs


@pytest.fixture(scope="module")
def lead_off(tmp_path_factory):
    """Record 208's excerpt with its first lead off (flat) from 60 s to 100 s."""
    rec = read_record_signals(FIXTURE_MIRROR, RECORD)
    signal = rec.signal[:, :2].copy()
    signal[int(60 * rec.fs) : int(100 * rec.fs), 0] = 0.0
    out = tmp_path_factory.mktemp("lead-off")
    wfdb.wrsamp("208", fs=rec.fs, units=["mV", "mV"], sig_name=rec.leads[:2], p_signal=signal, fmt=["16", "16"],
                adc_gain=[200.0, 200.0], baseline=[0, 0], write_dir=str(out))  # fmt: skip
    return out / "208"


def run(record_bundle, source, tmp_path, *extra):  # noqa: F811
    out = tmp_path / "beats.parquet"
    args = [str(source), str(out), "--model", str(record_bundle), "--no-progress", *extra]
    args += ["--findings", str(tmp_path / "findings.json"), "--report", str(tmp_path / "report.html")]
    assert batch.main(args) == 0
    return pd.read_parquet(out), json.loads((tmp_path / "findings.json").read_text()), (tmp_path / "report.html")


def test_the_findings_and_report_of_a_recording(record_bundle, lead_off, tmp_path):  # noqa: F811
    beats, found, report = run(record_bundle, lead_off, tmp_path, "--segment-seconds", "60")
    assert found["schema"] == SCHEMA and found["recording"]["name"] == "208"
    # the findings count the beats of the predictions
    assert found["beats"]["total"] == len(beats)
    assert found["beats"]["by_class"] == beats["class_name"].value_counts().sort_index().to_dict()
    assert found["ventricular"]["beats"] == int((beats["class_name"] == "V").sum()) > 20
    # the lead-off stretch is said, and nothing is counted across it
    assert any(u["start_s"] <= 61 and u["end_s"] >= 99 and "flat" in u["reason"] for u in found["unanalysed"])
    assert found["analysed_s"] <= found["duration_s"] - 40
    assert not any(60 < p["start_s"] < 100 for p in found["pauses"])
    expected = recording_findings(beats[["time_s", "class_name", "rr_check"]], found["duration_s"],
                                  [(u["start_s"], u["end_s"], u["reason"]) for u in found["unanalysed"]])  # fmt: skip
    assert {k: v for k, v in found.items() if k not in ("recording", "model")} == json.loads(json.dumps(expected))
    # the page: self-contained, one trend figure and one strip per kind of finding
    page = report.read_text()
    assert "<script" not in page and not re.search(r"""(src|href)=['"]?https?:""", page)
    assert page.count("<img") == 1 + len(strips_to_show(found)) >= 3
    assert "Ventricular ectopy" in page and f"{found['ventricular']['couplets']:,} couplets" in page


def test_streamed_and_whole_give_the_same_findings(record_bundle, lead_off, tmp_path):  # noqa: F811
    _, streamed, _ = run(record_bundle, lead_off, tmp_path / "a", "--segment-seconds", "60")
    _, whole, _ = run(record_bundle, lead_off, tmp_path / "b", "--segment-seconds", "60", "--whole")
    assert streamed == whole


def test_findings_need_a_recording_and_the_right_suffix(record_bundle, tmp_path, capsys):  # noqa: F811
    source = FIXTURE_MIRROR / RECORD
    out = tmp_path / "beats.parquet"
    code = batch.main([str(source), str(out), "--model", str(record_bundle), "--findings", str(tmp_path / "f.txt")])
    assert code == 2 and "f.txt: must end in .json" in capsys.readouterr().err
    assert not out.exists()
    beats = tmp_path / "rows.parquet"
    pd.DataFrame({"s000": np.zeros(3)}).to_parquet(beats)
    code = batch.main([str(beats), str(out), "--model", str(record_bundle), "--report", str(tmp_path / "r.html")])
    assert code == 2 and "need a recording" in capsys.readouterr().err
