"""Data tests: the beat table's schema and invariants, on the fixtures and on the full database."""

from __future__ import annotations

import numpy as np
import pytest

from ecgbeats.data.dataset import SAMPLE_COLUMNS, build_beat_table, class_counts

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
def test_full_database_reproduces_the_published_counts_and_rows(full_mirror):
    """The published rule (a beat ends at the next annotation of any type): the published counts and every
    one of the 520 reference rows bit for bit (the default rule's 503 are in metrics/data.json)."""
    from ecgbeats.data.fidelity import compare_with_reference, load_reference, summarize
    from tests.conftest import ROOT

    records = (full_mirror / "RECORDS").read_text().split()
    beats = build_beat_table(full_mirror, records, beat_end="next_annotation", progress=False)
    assert len(beats) == 109_446
    assert class_counts(beats["label"]) == PUBLISHED_COUNTS
    assert beats["record"].nunique() == 48
    check_invariants(beats)
    assert beats.groupby("record")["beat_index"].max().min() > 1000
    fidelity = summarize(compare_with_reference(beats, load_reference(ROOT / "references" / "kaggle")))
    assert (fidelity["rows"], fidelity["exact"]) == (520, 520)
    assert int((beats["length"] > 187).sum()) == 931  # 1,601 when every beat runs on to the next R peak


@pytest.mark.mirror
def test_full_database_matches_the_published_reference_rows(full_mirror):
    from ecgbeats.data.fidelity import compare_with_reference, load_reference
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


def test_committed_rebuild_matches_the_published_reference_rows():
    """metrics/data.json comes from ingest on the full database: with the published rule every one of
    the 520 reference rows bit for bit, with the default rule all but the 17 cut at a non-beat mark."""
    import json

    import yaml

    from tests.conftest import ROOT

    data = json.loads((ROOT / "metrics" / "data.json").read_text())
    rules = yaml.safe_load((ROOT / "params.yaml").read_text())["ingest"]["beat_end"]
    for protocol, figures in (("kaggle", data), ("interpatient", data["interpatient"])):
        fidelity = figures["fidelity"]
        assert figures["beat_end"] == rules[protocol]
        assert fidelity["rows"] == 520
        assert fidelity["exact"] == {"next_annotation": 520, "next_beat": 503}[rules[protocol]]
        assert fidelity["exact"] + fidelity["inexact"] == 520
        assert figures["beats"] == 109_446


def test_fixture_beats_end_at_non_beat_annotations():
    """A beat followed by a rhythm, noise or comment mark stops there, not at the next R peak; a mark right
    after the next R peak shortens the fifth of the following interval that the beat runs on by."""
    from ecgbeats.data.aami import SYMBOL_TO_LABEL
    from ecgbeats.data.beats import DECIMATION, TAIL_DIVISOR
    from ecgbeats.data.dataset import read_record
    from tests.conftest import FIXTURE_MIRROR as mirror

    records = (mirror / "RECORDS").read_text().split()
    checked = {"bound": 0, "tail": 0}
    for record in records:
        signal, fs, _, samples, symbols = read_record(mirror, record)
        symbols = np.asarray(symbols, dtype=object)
        beats = build_beat_table(mirror, [record], beat_end="next_annotation", progress=False)
        plain = build_beat_table(mirror, [record], progress=False).set_index("r_peak")["length"]
        peaks = samples[np.isin(symbols, list(SYMBOL_TO_LABEL))]
        for row in beats.itertuples():
            after = samples[samples > row.r_peak]
            if len(after) < 2 or (after[0] in peaks and after[1] in peaks):
                continue
            stop = after[0] + (after[1] - after[0]) // TAIL_DIVISOR
            assert row.length == len(range(row.r_peak, min(stop, len(signal)), DECIMATION))
            assert row.length <= plain[row.r_peak]  # the default rule runs on to the next R peak
            checked["bound" if after[0] not in peaks else "tail"] += 1
    assert min(checked.values()) > 0, f"the fixture excerpts lack a case: {checked}"
