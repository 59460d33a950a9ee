"""Every way the project draws beats at random, in one place, each seeded and label-aware.

- :func:`stratified_pick`: a label-stratified subset of a fraction or a count (scikit-learn's split),
  for splits and learning curves;
- :func:`balanced_subsample`: every class up to an equal share, the rest at random, for a selection
  that must see the rare classes (the tsfresh relevance table);
- :func:`proportional_subsample`: exactly ``n`` beats with the classes in proportion, each present,
  for measurements on a smaller copy of a set (the synthetic shifts);
- :func:`per_class_sample`: up to ``k`` beats of every class, for figures.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from ecgbeats.data.aami import CLASS_NAMES


class SplitError(ValueError):
    """The data cannot be split or sampled as the params ask."""


def stratified_pick(labels: np.ndarray, size: float | int, seed: int) -> np.ndarray:
    """Boolean mask of a label-stratified random subset of ``size`` (a fraction or a count).

    Classes with a single member cannot be stratified; they stay outside the subset.
    """
    labels = np.asarray(labels)
    index = np.arange(len(labels))
    values, counts = np.unique(labels, return_counts=True)
    rare = np.isin(labels, values[counts < 2])
    if isinstance(size, float) and not 0 < size < 1:
        raise SplitError(f"a split fraction must be between 0 and 1, got {size}")
    if isinstance(size, int) and not 0 < size < (~rare).sum():
        raise SplitError(f"cannot take {size} beats out of {(~rare).sum()}")
    _, picked = train_test_split(index[~rare], test_size=size, stratify=labels[~rare], random_state=seed)
    mask = np.zeros(len(labels), dtype=bool)
    mask[picked] = True
    return mask


def balanced_subsample(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Row positions: every class up to an equal share of ``size``, the rest filled at random."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    classes = np.unique(labels)
    share = size // len(classes)
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:share] for c in classes]
    taken = np.concatenate(chosen)
    rest = np.setdiff1d(np.arange(len(labels)), taken)
    fill = rng.permutation(rest)[: max(0, size - len(taken))]
    return np.sort(np.concatenate([taken, fill]))


def proportional_subsample(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of exactly ``min(n, len(labels))`` beats, each class in proportion (at least one beat
    of each while ``n`` allows); the rounding goes to the largest remainders."""
    labels = np.asarray(labels)
    if n >= len(labels):
        return np.arange(len(labels))
    values, counts = np.unique(labels, return_counts=True)
    exact = counts * n / len(labels)
    quota = np.minimum(counts, np.maximum(1, np.floor(exact))).astype(np.int64)
    for i in np.argsort(-(exact - np.floor(exact)), kind="stable"):  # hand out the rest, largest remainder first
        if quota.sum() >= n:
            break
        quota[i] += quota[i] < counts[i]
    while quota.sum() > n:  # the at-least-one rule overshot: take from the largest quota
        quota[np.argmax(quota)] -= 1
    rng = np.random.default_rng(seed)
    picked = [
        rng.choice(np.flatnonzero(labels == v), size=q, replace=False) for v, q in zip(values, quota, strict=True)
    ]
    return np.sort(np.concatenate(picked))


def per_class_sample(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Sorted indices of up to ``per_class`` random beats of every class (seeded)."""
    rng = np.random.default_rng(seed)
    picked = []
    for i in range(len(CLASS_NAMES)):
        index = np.flatnonzero(labels == i)
        picked.append(rng.choice(index, size=min(per_class, len(index)), replace=False))
    return np.sort(np.concatenate(picked)).astype(np.int64)
