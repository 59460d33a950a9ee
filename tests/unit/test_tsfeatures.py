"""tsfresh: stratified subsample, selection on train only, frozen settings, extraction in training column order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecgbeats.data.beats import BEAT_SAMPLES
from ecgbeats.data.dataset import SAMPLE_COLUMNS
from ecgbeats.data.sampling import balanced_subsample
from ecgbeats.features.groups import build_features
from ecgbeats.features.tsfresh_features import (
    TsfreshSettings,
    candidate_parameters,
    extract,
    extract_selected,
    freeze,
    model_column,
    select,
    to_long,
)

SMALL = {"mean": None, "maximum": None, "standard_deviation": None, "skewness": None, "abs_energy": None,
         "fft_coefficient": [{"coeff": 1, "attr": "abs"}], "length": None}  # fmt: skip


def _beats(n: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    lengths = np.where(labels == 2, rng.integers(60, 90, n), rng.integers(100, 187, n))
    t = np.arange(BEAT_SAMPLES)[None, :]
    width = np.where(labels == 1, 12.0, 3.0)[:, None]
    samples = np.exp(-(t**2) / width) + 0.05 * rng.random((n, BEAT_SAMPLES))
    samples[t >= lengths[:, None]] = 0.0
    frame = pd.DataFrame(samples.astype(np.float32), columns=SAMPLE_COLUMNS)
    return frame.assign(length=lengths, label=labels)


def test_long_format_uses_unpadded_part_or_all_samples():
    beats = _beats(5)
    unpadded = to_long(beats, "unpadded")
    assert unpadded.groupby("id").size().tolist() == beats["length"].clip(upper=BEAT_SAMPLES).tolist()
    assert (to_long(beats, "full").groupby("id").size() == BEAT_SAMPLES).all()
    with pytest.raises(ValueError):
        to_long(beats, "half")


def test_candidate_set_drops_slow_calculators():
    full = candidate_parameters(())
    trimmed = candidate_parameters(("cwt_coefficients", "augmented_dickey_fuller"))
    assert "cwt_coefficients" in full and "cwt_coefficients" not in trimmed
    assert len(trimmed) == len(full) - 2


def test_stratified_subsample_takes_every_class():
    labels = np.array([0] * 1000 + [1] * 30 + [2] * 5)
    rows = balanced_subsample(labels, 300, seed=1)
    assert len(rows) == 300 and len(set(rows)) == 300
    counts = np.bincount(labels[rows])
    assert counts[1] == 30 and counts[2] == 5  # small classes whole
    assert np.array_equal(rows, balanced_subsample(labels, 300, seed=1))


def test_selection_freeze_and_extraction_round_trip(tmp_path):
    train, other = _beats(120, seed=0), _beats(40, seed=1)
    candidates = extract(train, SMALL)
    selected, table = select(candidates, train["label"].to_numpy(), fdr_level=0.05, top_k=3)
    assert 0 < len(selected) <= 3
    assert table.loc[selected, "relevant"].all() and table["selected"].sum() == len(selected)
    ranks = table.loc[selected, "p_value_min"].to_numpy()
    assert np.all(np.diff(ranks) >= 0)  # best first
    settings = freeze(selected)
    path = tmp_path / "tsfresh_settings.json"
    settings.to_json(path)
    loaded = TsfreshSettings.from_json(path)
    assert loaded == settings
    features = extract_selected(other, loaded)
    assert list(features.columns) == settings.columns == [model_column(c) for c in selected]
    assert len(features) == len(other)
    np.testing.assert_allclose(features.to_numpy(), candidates_of(other)[selected].to_numpy(), rtol=1e-5)


def candidates_of(beats: pd.DataFrame) -> pd.DataFrame:
    return extract(beats, SMALL)


def test_extraction_follows_training_column_order_and_single_beats():
    train = _beats(90)
    selected, _ = select(extract(train, SMALL), train["label"].to_numpy(), fdr_level=0.2, top_k=None)
    settings = freeze(list(reversed(selected)))  # any frozen order is kept as is
    one = extract_selected(train.iloc[[7]], settings)
    many = extract_selected(train, settings)
    assert list(one.columns) == settings.columns
    np.testing.assert_allclose(one.to_numpy()[0], many.to_numpy()[7], rtol=1e-6)


def test_build_features_tsfresh_group_uses_settings_and_cache():
    train = _beats(60)
    selected, _ = select(extract(train, SMALL), train["label"].to_numpy(), fdr_level=0.2, top_k=2)
    settings = freeze(selected)
    computed = build_features(train, ["length", "tsfresh"], tsfresh_settings=settings)
    cache = extract_selected(train, settings)
    cached = build_features(train, ["length", "tsfresh"], tsfresh_settings=settings, tsfresh_cache=cache)
    pd.testing.assert_frame_equal(computed, cached)
    assert list(computed.columns) == ["length", *settings.columns]
    with pytest.raises(ValueError, match="frozen tsfresh settings"):
        build_features(train, ["tsfresh"])
    with pytest.raises(ValueError, match="rows"):
        build_features(train, ["tsfresh"], tsfresh_settings=settings, tsfresh_cache=cache.iloc[:3])
