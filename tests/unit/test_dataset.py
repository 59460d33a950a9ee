from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import wfdb

from ecgbeats.data.aami import BEAT_SYMBOLS, SYMBOL_TO_LABEL
from ecgbeats.data.dataset import (
    META_COLUMNS,
    SAMPLE_COLUMNS,
    InputDataError,
    read_kaggle_csv,
    read_kaggle_dir,
    record_beats,
)
from tests.conftest import FIXTURE_MIRROR


def test_record_beats_keep_provenance_and_drop_the_last_beat():
    frame = record_beats(FIXTURE_MIRROR, "208")
    ann = wfdb.rdann(str(FIXTURE_MIRROR / "208"), "atr")
    aami = [(s, sym) for s, sym in zip(ann.sample, ann.symbol, strict=True) if sym in SYMBOL_TO_LABEL]
    assert len(frame) == len(aami) - 1
    assert frame["r_peak"].tolist() == [s for s, _ in aami[:-1]]
    assert frame["symbol"].tolist() == [sym for _, sym in aami[:-1]]
    assert frame["label"].tolist() == [SYMBOL_TO_LABEL[sym] for _, sym in aami[:-1]]
    assert frame["beat_index"].tolist() == list(range(len(frame)))
    assert (frame["record"] == "208").all() and (frame["lead"] == "MLII").all()
    assert list(frame.columns) == META_COLUMNS + SAMPLE_COLUMNS


def test_rr_intervals_come_from_neighbouring_beat_annotations():
    frame = record_beats(FIXTURE_MIRROR, "232")
    ann = wfdb.rdann(str(FIXTURE_MIRROR / "232"), "atr")
    peaks = np.array([s for s, sym in zip(ann.sample, ann.symbol, strict=True) if sym in BEAT_SYMBOLS])
    i = 10
    position = int(np.searchsorted(peaks, frame["r_peak"].iloc[i]))
    assert frame["rr_prev"].iloc[i] == pytest.approx((peaks[position] - peaks[position - 1]) / 360, rel=1e-6)
    assert frame["rr_next"].iloc[i] == pytest.approx((peaks[position + 1] - peaks[position]) / 360, rel=1e-6)
    assert np.isnan(frame["rr_prev"].iloc[0])
    # ectopic beats come early: relative to the local rhythm, their previous interval is shorter
    ratio = frame["rr_prev"] / frame["rr_local"]
    assert ratio[frame["label"] == 1].median() < 0.9 * ratio[frame["label"] == 0].median()


def test_mlii_is_used_and_records_without_it_fall_back_to_the_first_lead(tmp_path):
    frame = record_beats(FIXTURE_MIRROR, "124")
    assert (frame["lead"] == "MLII").all()


def test_record_missing_its_annotations_is_named(mirror):
    (mirror / "201.atr").unlink()
    with pytest.raises(InputDataError, match=r"record 201: .*201\.atr is missing"):
        record_beats(mirror, "201")


def test_truncated_signal_is_named(mirror):
    data = (mirror / "201.dat").read_bytes()
    (mirror / "201.dat").write_bytes(data[: len(data) - 3000])
    with pytest.raises(InputDataError, match=r"record 201: .*201\.dat"):
        record_beats(mirror, "201")


def write_published_format(path, rows: np.ndarray, labels: np.ndarray) -> None:
    """Write rows the way the Kaggle CSVs are written: 18-digit scientific floats, no header."""
    table = np.column_stack([rows, labels]).astype(np.float64)
    np.savetxt(path, table, delimiter=",", fmt="%.18e")


@pytest.fixture
def kaggle_dir(tmp_path):
    rng = np.random.default_rng(0)
    for name, n in (("mitbih_train.csv", 12), ("mitbih_test.csv", 5)):
        rows = rng.random((n, 187)).astype(np.float32)
        rows[:, 150:] = 0.0
        write_published_format(tmp_path / name, rows, np.arange(n) % 5)
    return tmp_path


def test_kaggle_csv_source_has_the_same_schema_and_keeps_the_published_split(kaggle_dir, fixture_beats):
    frame = read_kaggle_dir(kaggle_dir)
    assert list(frame.columns) == list(fixture_beats.columns)
    assert frame.dtypes.equals(fixture_beats.dtypes)
    assert frame["kaggle_split"].value_counts().to_dict() == {"train": 12, "test": 5}
    assert frame["record"].isna().all() and frame["r_peak"].isna().all()
    assert frame["label"].tolist()[:6] == [0, 1, 2, 3, 4, 0]
    assert (frame["length"] == 150).all()
    expected = pd.read_csv(kaggle_dir / "mitbih_train.csv", header=None).iloc[:, :187].to_numpy(np.float32)
    np.testing.assert_array_equal(frame[SAMPLE_COLUMNS].to_numpy()[:12], expected)


def _write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def _row(values=None, label="0.000000000000000000e+00"):
    values = values or ["5.000000000000000000e-01"] * 187
    return ",".join([*values, label])


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        (",".join(["0.5"] * 100), r"row 2: 100 columns, expected 188"),
        (_row(label="5.000000000000000000e+00"), r"row 2: label 5 is not one of 0\.\.4"),
        (_row(["0.5"] * 10 + ["nan"] + ["0.5"] * 176), r"row 2, column 11: 'nan' is not a finite number"),
        (_row(["0.5"] * 3 + ["abc"] + ["0.5"] * 183), r"row 2, column 4: 'abc' is not a finite number"),
        (_row(["0.5"] * 186 + [""]), r"row 2, column 187: '' is not a finite number"),
    ],
)
def test_malformed_csv_names_the_file_and_row(tmp_path, bad_line, message):
    path = _write_lines(tmp_path / "mitbih_train.csv", [_row(), bad_line, _row()])
    with pytest.raises(InputDataError, match=message) as err:
        read_kaggle_csv(path)
    assert str(path) in str(err.value)
