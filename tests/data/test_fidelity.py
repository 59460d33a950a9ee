"""Fidelity to the published Kaggle rows: the summary, the rows the fixture excerpts hold, the reference copy."""

from __future__ import annotations

import filecmp
import json
import re

import numpy as np
import pandas as pd
import pytest
import wfdb

from ecgbeats.data.dataset import build_beat_table
from ecgbeats.data.fidelity import EXACT_TOLERANCE, compare_with_reference, load_reference, summarize
from tests.conftest import FIXTURE_MIRROR, FIXTURE_RECORDS, ROOT

REFERENCE = ROOT / "references" / "kaggle"
# the published files as distributed to the project; CI has ../shared beside its clone
SHARED_REFERENCE = ROOT.parent / "shared" / "data" / "kaggle-reference"

# Published rows whose beats lie inside the fixture excerpts: (record, sample in the full record),
# located on the full database. Row 57 starts at an N beat followed by a rhythm change to bigeminy
# ('+', aux '(B') 93 samples later, then a V beat 187 samples after the R peak: the published row
# is 37 samples long, cut at the rhythm mark, where a beat ending at the next R peak has 77.
IN_FIXTURES = {
    "mitbih_test_rows_1_500:16": ("213", 128981),
    "mitbih_test_rows_1_500:57": ("213", 176464),
    "mitbih_test_rows_1_500:247": ("213", 150645),
    "mitbih_test_rows_1_500:257": ("217", 286959),
    "mitbih_test_rows_1_500:290": ("201", 380490),
    "mitbih_test_rows_1_500:306": ("201", 381280),
}
CUT_AT_A_RHYTHM_MARK = "mitbih_test_rows_1_500:57"


def excerpt_start(record: str) -> int:
    """Where a fixture excerpt starts in its full record (scripts/make_fixtures.py notes it in the header)."""
    comments = wfdb.rdheader(str(FIXTURE_MIRROR / record)).comments
    found = [m for c in comments if (m := re.fullmatch(r"excerpt: samples (\d+)-\d+ of MIT-BIH record \d+", c))]
    assert len(found) == 1, f"fixture {record}: no excerpt line in its header"
    return int(found[0].group(1))


def exact_rows(beat_end: str) -> dict[str, tuple[str, int]]:
    """Reference rows reproduced exactly by the fixture excerpts, with the full-record sample of each."""
    beats = build_beat_table(FIXTURE_MIRROR, FIXTURE_RECORDS, beat_end=beat_end, progress=False)
    comparison = compare_with_reference(beats, load_reference(REFERENCE))
    exact = comparison[comparison["max_abs"] < EXACT_TOLERANCE]
    return {row.reference: (row.record, int(row.r_peak) + excerpt_start(row.record)) for row in exact.itertuples()}


def test_published_rows_in_the_fixtures_are_reproduced_only_with_the_published_rule():
    assert exact_rows("next_annotation") == IN_FIXTURES
    assert exact_rows("next_beat") == {k: v for k, v in IN_FIXTURES.items() if k != CUT_AT_A_RHYTHM_MARK}


def test_summary_counts_exact_rows_and_describes_the_rest():
    comparison = pd.DataFrame(
        {
            "max_abs": [0.0, 5e-7, 0.1, 0.3, 0.5],
            "rms": [0.0, 1e-7, 0.02, 0.04, 0.09],
            "length_published": [100, 90, 80, 30, 60],
            "length_rebuilt": [100, 90, 80, 70, 61],
        }
    )
    summary = summarize(comparison)
    assert (summary["rows"], summary["exact"], summary["inexact"]) == (5, 2, 3)
    assert summary["inexact_max_abs_median"] == 0.3 and summary["inexact_max_abs_worst"] == 0.5
    assert summary["inexact_rms_median"] == 0.04 and summary["inexact_rms_worst"] == 0.09
    assert summary["length_matches"] == 3
    everything = summarize(comparison.iloc[:2])
    assert everything["inexact"] == 0 and everything["inexact_max_abs_median"] is None


def test_committed_fidelity_summarises_the_committed_per_row_file():
    """metrics/data.json's fidelity is the summary of metrics/fidelity.csv, over all 520 reference rows."""
    per_row = pd.read_csv(ROOT / "metrics" / "fidelity.csv")
    committed = json.loads((ROOT / "metrics" / "data.json").read_text())["fidelity"]
    assert len(per_row) == committed["rows"] == len(load_reference(REFERENCE)) == 520
    recomputed = summarize(per_row)
    for key, value in committed.items():  # keys added since the last pipeline run appear with the next one
        assert recomputed[key] == (pytest.approx(value) if isinstance(value, float) else value), key


def test_reference_rows_are_the_published_ones():
    """references/kaggle is a copy of the published rows kept beside the project; they must not drift."""
    if not SHARED_REFERENCE.is_dir():
        pytest.skip(f"{SHARED_REFERENCE} is not beside the clone")
    shared = sorted(p.name for p in SHARED_REFERENCE.glob("*.csv"))
    assert sorted(p.name for p in REFERENCE.glob("*.csv")) == shared
    _, mismatch, errors = filecmp.cmpfiles(REFERENCE, SHARED_REFERENCE, shared, shallow=False)
    assert mismatch == errors == []
    values = np.vstack([pd.read_csv(REFERENCE / name, header=None).to_numpy() for name in shared])
    assert values.shape == (520, 188)
