"""The two evaluation protocols, as one set name per beat.

``kaggle``: a random, label-stratified beat split (patients leak across sets, as in the published
results). ``interpatient``: de Chazal's DS1/DS2 split, where the holdout patients are never seen.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ecgbeats.data.aami import CLASS_NAMES, DS1, DS2
from ecgbeats.data.sampling import SplitError, stratified_pick

PROTOCOLS = ("kaggle", "interpatient")  # the evaluation protocols, each with its own sets
KAGGLE_SETS = ("train", "val", "test")
INTERPATIENT_SETS = ("train", "val", "test", "holdout")
EXCLUDED = ""  # beats in neither DS1 nor DS2 (the paced records)


def kaggle_split(
    labels: np.ndarray,
    *,
    test_size: float | int,
    val_size: float,
    seed: int,
    published_test: np.ndarray | None = None,
) -> np.ndarray:
    """Set name per beat; ``published_test`` (from the Kaggle CSVs) replaces the random test pick."""
    labels = np.asarray(labels)
    sets = np.full(len(labels), "train", dtype=object)
    is_test = (
        np.asarray(published_test, dtype=bool)
        if published_test is not None
        else stratified_pick(labels, test_size, seed)
    )
    sets[is_test] = "test"
    train = np.flatnonzero(~is_test)
    sets[train[stratified_pick(labels[train], val_size, seed + 1)]] = "val"
    return sets


def choose_validation_records(
    records: np.ndarray,
    labels: np.ndarray,
    candidates: Sequence[str],
    *,
    n_records: int,
    required: Sequence[str],
    min_beats: int,
    seed: int,
    max_draws: int = 10_000,
) -> list[str]:
    """Draw ``n_records`` whole records (seeded) holding at least ``min_beats`` beats of every
    ``required`` class, while the records left for training hold as many too."""
    need = [CLASS_NAMES.index(c) for c in required]
    counts = {r: np.bincount(labels[records == r], minlength=len(CLASS_NAMES)) for r in candidates}

    def enough(group: list[str]) -> bool:
        total = sum((counts[r] for r in group), np.zeros(len(CLASS_NAMES), dtype=np.int64))
        return bool(np.all(total[need] >= min_beats))

    if not 0 < n_records < len(candidates):
        raise SplitError(f"val_records={n_records} must be between 1 and {len(candidates) - 1} (DS1 records present)")
    rng = np.random.default_rng(seed)
    for _ in range(max_draws):
        pick = sorted(rng.choice(sorted(candidates), size=n_records, replace=False).tolist())
        if enough(pick) and enough([r for r in candidates if r not in pick]):
            return pick
    raise SplitError(
        f"no draw of {n_records} DS1 records holds {min_beats} beats of each of {list(required)} in "
        f"both validation and training; change split.interpatient.val_records, "
        f"required_val_classes or min_class_beats"
    )


def interpatient_split(
    records: np.ndarray,
    labels: np.ndarray,
    *,
    val_records: int,
    test_size: float,
    seed: int,
    required_val_classes: Sequence[str] = ("N", "S", "V", "F"),
    min_class_beats: int = 1,
    ds1: Sequence[str] = DS1,
    ds2: Sequence[str] = DS2,
) -> tuple[np.ndarray, list[str]]:
    """Set name per beat and the validation records.

    DS1 gives train, val (whole records) and test (an in-patient, stratified beat sample of the
    training records); DS2 is the holdout; other records (paced) are excluded.
    """
    records = np.asarray(records, dtype=object)
    labels = np.asarray(labels)
    if any(pd.isna(r) for r in records):
        raise SplitError(
            "the interpatient protocol needs each beat's record; this beat table has none (Kaggle CSV source?)"
        )
    present = set(records.tolist())
    ds1_present = [r for r in ds1 if r in present]
    if not any(r in present for r in ds2):
        raise SplitError("no DS2 record in the beat table: the interpatient holdout would be empty")
    val = choose_validation_records(
        records,
        labels,
        ds1_present,
        n_records=val_records,
        required=required_val_classes,
        min_beats=min_class_beats,
        seed=seed,
    )
    sets = np.full(len(labels), EXCLUDED, dtype=object)
    sets[np.isin(records, list(ds2))] = "holdout"
    sets[np.isin(records, val)] = "val"
    train = np.flatnonzero(np.isin(records, [r for r in ds1_present if r not in val]))
    sets[train] = "train"
    sets[train[stratified_pick(labels[train], test_size, seed)]] = "test"
    return sets, val
