from __future__ import annotations

import numpy as np
import pytest

from ecgbeats.data.aami import DS1, DS2
from ecgbeats.data.splits import SplitError, interpatient_split, kaggle_split


def labels_with_shares(n=5000, seed=0):
    rng = np.random.default_rng(seed)
    return rng.choice(5, size=n, p=[0.83, 0.03, 0.07, 0.01, 0.06])


def test_kaggle_split_sizes_are_exact_disjoint_stratified_and_seeded():
    labels = labels_with_shares()
    sets = kaggle_split(labels, test_size=1000, val_size=0.1, seed=3)
    assert (sets == "test").sum() == 1000
    assert set(sets) == {"train", "val", "test"}
    for name in ("train", "val", "test"):
        shares = np.bincount(labels[sets == name], minlength=5) / (sets == name).sum()
        np.testing.assert_allclose(shares, np.bincount(labels, minlength=5) / len(labels), atol=0.01)
    np.testing.assert_array_equal(sets, kaggle_split(labels, test_size=1000, val_size=0.1, seed=3))
    assert not np.array_equal(sets, kaggle_split(labels, test_size=1000, val_size=0.1, seed=4))


def test_kaggle_split_keeps_the_published_test_set():
    labels = labels_with_shares(500)
    published = np.zeros(500, dtype=bool)
    published[::5] = True
    sets = kaggle_split(labels, test_size=0.2, val_size=0.1, seed=0, published_test=published)
    np.testing.assert_array_equal(sets == "test", published)


def synthetic_records(beats_per_record=200, seed=0):
    rng = np.random.default_rng(seed)
    records, labels = [], []
    for record in (*DS1, *DS2, "102", "217"):
        records += [record] * beats_per_record
        labels += rng.choice(5, size=beats_per_record, p=[0.8, 0.05, 0.1, 0.03, 0.02]).tolist()
    return np.array(records, dtype=object), np.array(labels)


def test_interpatient_split_keeps_patients_apart():
    records, labels = synthetic_records()
    sets, val = interpatient_split(records, labels, val_records=4, test_size=0.2, seed=1, min_class_beats=3)
    assert len(val) == 4 and set(val) <= set(DS1)
    assert set(records[sets == "holdout"]) == set(DS2)
    assert set(records[sets == "val"]) == set(val)
    train_records = set(records[sets == "train"])
    assert train_records.isdisjoint(val) and train_records.isdisjoint(DS2)
    assert set(records[sets == "test"]) <= train_records  # in-patient test: the training patients
    assert set(records[sets == ""]) == {"102", "217"}  # paced records are excluded
    for name in ("val", "train"):
        counts = np.bincount(labels[sets == name], minlength=5)
        assert (counts[:4] >= 3).all()


def test_interpatient_split_is_seeded():
    records, labels = synthetic_records()
    first = interpatient_split(records, labels, val_records=4, test_size=0.2, seed=7)
    again = interpatient_split(records, labels, val_records=4, test_size=0.2, seed=7)
    np.testing.assert_array_equal(first[0], again[0])
    assert first[1] == again[1]


def test_interpatient_split_explains_an_impossible_validation_set():
    records, labels = synthetic_records()
    labels[labels == 3] = 0  # no F beat anywhere
    with pytest.raises(SplitError, match="no draw of 4 DS1 records"):
        interpatient_split(records, labels, val_records=4, test_size=0.2, seed=1)


def test_interpatient_split_needs_records():
    labels = labels_with_shares(100)
    with pytest.raises(SplitError, match="needs each beat's record"):
        interpatient_split(np.array([None] * 100, dtype=object), labels, val_records=2, test_size=0.2, seed=0)
