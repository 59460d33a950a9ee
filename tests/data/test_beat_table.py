"""Data tests: the beat table's schema and invariants, on the fixtures and on the full database."""

from __future__ import annotations

import numpy as np
import pytest

from ecgbeats.dataset import SAMPLE_COLUMNS, build_beat_table, class_counts

PUBLISHED_COUNTS = {"N": 90589, "S": 2779, "V": 7236, "F": 803, "Q": 8039}


def check_invariants(beats) -> None:
    samples = beats[SAMPLE_COLUMNS].to_numpy()
    lengths = beats["length"].to_numpy()
    assert beats["label"].between(0, 4).all()
    assert (lengths >= 1).all()
    assert np.isfinite(samples).all() and samples.min() >= 0 and samples.max() <= 1
    padding = np.arange(187)[None, :] >= lengths[:, None]
    assert (samples[padding] == 0).all(), "non-zero value after the unpadded length"
    whole = lengths <= 187  # longer beats are scaled over their full length, then cut
    assert np.allclose(samples[whole].max(axis=1), 1.0), "each beat is min-max scaled to reach 1"
    assert not beats.duplicated(["record", "beat_index"]).any()
    assert not beats.duplicated(["record", "r_peak"]).any()
    assert (beats["rr_next"] > 0).all()


def test_fixture_table_invariants(fixture_beats):
    check_invariants(fixture_beats)
    assert set(class_counts(fixture_beats["label"]).values()) != {0}
    assert all(count > 0 for count in class_counts(fixture_beats["label"]).values())


@pytest.mark.mirror
def test_full_database_reproduces_the_published_counts(full_mirror):
    records = (full_mirror / "RECORDS").read_text().split()
    beats = build_beat_table(full_mirror, records, progress=False)
    assert len(beats) == 109_446
    assert class_counts(beats["label"]) == PUBLISHED_COUNTS
    assert beats["record"].nunique() == 48
    check_invariants(beats)
    assert beats.groupby("record")["beat_index"].max().min() > 1000


@pytest.mark.mirror
def test_full_database_matches_the_published_reference_rows(full_mirror):
    from ecgbeats.fidelity import compare_with_reference, load_reference
    from tests.conftest import ROOT

    records = ["103", "114", "122"]  # sources of four published reference rows
    beats = build_beat_table(full_mirror, records, progress=False)
    comparison = compare_with_reference(beats, load_reference(ROOT / "references" / "kaggle"))
    found = comparison.set_index("reference").loc[
        ["mitbih_test_first10:0", "mitbih_train_first10:6", "mitbih_train_first10:0", "mitbih_test_first10:5"]
    ]
    assert (found["max_abs"] == 0).all()
    assert found["record"].tolist() == ["103", "114", "122", "122"]
    assert (found["length_published"] == found["length_rebuilt"]).all()
