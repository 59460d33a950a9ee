"""Augmentation: training split only, class-aware counts, seeded transforms, shapes, severity 0 = identity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecgbeats.data.aami import CLASS_NAMES
from ecgbeats.data.beats import BEAT_SAMPLES
from ecgbeats.data.dataset import META_COLUMNS, SAMPLE_COLUMNS
from ecgbeats.processing.augment import TRANSFORMS, AugmentConfig, apply_transform, augment_training, augmentation_plan


def _beats(counts: dict[str, int], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for name, n in counts.items():
        for _ in range(n):
            length = int(rng.integers(80, 200))
            t = np.arange(min(length, BEAT_SAMPLES))
            signal = np.exp(-((t - 2) ** 2) / 4.0) + 0.3 * np.exp(-((t - 40) ** 2) / 60.0) + 0.01 * rng.random(len(t))
            signal = (signal - signal.min()) / np.ptp(signal)
            samples = np.zeros(BEAT_SAMPLES, dtype=np.float32)
            samples[: len(t)] = signal
            rows.append({"record": "100", "beat_index": 0, "r_peak": 0, "symbol": "N", "lead": "MLII",
                         "label": CLASS_NAMES.index(name), "length": length, "rr_prev": 0.8, "rr_next": 0.8,
                         "rr_local": 0.8, "kaggle_split": None,
                         **dict(zip(SAMPLE_COLUMNS, samples, strict=True))})  # fmt: skip
    frame = pd.DataFrame(rows)[META_COLUMNS + SAMPLE_COLUMNS]
    frame[SAMPLE_COLUMNS] = frame[SAMPLE_COLUMNS].astype(np.float32)
    return frame


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return _beats({"N": 400, "S": 12, "V": 60, "F": 20, "Q": 3})


def test_plan_fills_minority_classes_to_target_ratio(train):
    config = AugmentConfig(target_ratio=10, min_beats=10, max_factor=10, classes=("S", "V", "F"))
    plan = augmentation_plan(train["label"].to_numpy(), config)
    assert plan == {"N": 0, "S": 40 - 12, "V": 0, "F": 40 - 20, "Q": 0}  # target ceil(400/10)=40; V has 60
    capped = augmentation_plan(train["label"].to_numpy(), AugmentConfig(target_ratio=2, min_beats=10, max_factor=3))
    assert capped["S"] == 12 * 3 - 12 and capped["V"] == 180 - 60  # at most ×max_factor


def test_too_few_beats_are_not_multiplied(train):
    plan = augmentation_plan(
        train["label"].to_numpy(), AugmentConfig(target_ratio=10, min_beats=15, classes=("S", "F", "Q"))
    )
    assert plan["S"] == 0 and plan["Q"] == 0 and plan["F"] == 20


def test_augmented_frame_keeps_originals_and_adds_valid_beats(train):
    config = AugmentConfig(target_ratio=10, min_beats=10, seed=1)
    out, summary = augment_training(train, config)
    n = len(train)
    pd.testing.assert_frame_equal(out.iloc[:n][train.columns].reset_index(drop=True), train.reset_index(drop=True))
    assert not out["augmented"].iloc[:n].any() and out["augmented"].iloc[n:].all()
    synthetic = out.iloc[n:]
    assert len(synthetic) == sum(summary["added"].values()) == 48
    assert set(synthetic["label"]) == {CLASS_NAMES.index("S"), CLASS_NAMES.index("F")}
    values = synthetic[SAMPLE_COLUMNS].to_numpy()
    assert values.shape[1] == BEAT_SAMPLES and np.isfinite(values).all()
    assert values.min() >= 0 and values.max() <= 1 + 1e-6
    for _, row in synthetic.iterrows():  # zero padding after the unpadded length, max 1 inside it
        kept = min(int(row["length"]), BEAT_SAMPLES)
        assert np.all(row[SAMPLE_COLUMNS].to_numpy()[kept:] == 0)
        assert row[SAMPLE_COLUMNS].to_numpy()[:kept].max() == pytest.approx(1.0)
    source_labels = train["label"].to_numpy()[synthetic["augment_source"].to_numpy()]
    assert np.array_equal(source_labels, synthetic["label"].to_numpy())  # class-preserving
    assert summary["after"]["S"] == 40 and summary["after"]["F"] == 40


def test_augmentation_is_deterministic_with_seed(train):
    a, _ = augment_training(train, AugmentConfig(min_beats=10, seed=7))
    b, _ = augment_training(train, AugmentConfig(min_beats=10, seed=7))
    c, _ = augment_training(train, AugmentConfig(min_beats=10, seed=8))
    pd.testing.assert_frame_equal(a, b)
    assert not np.array_equal(a[SAMPLE_COLUMNS].to_numpy()[len(train) :], c[SAMPLE_COLUMNS].to_numpy()[len(train) :])


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_severity_zero_is_identity_and_transform_is_seeded(name):
    t = np.arange(120)
    x = np.exp(-((t - 2) ** 2) / 4.0) + 0.3 * np.exp(-((t - 40) ** 2) / 60.0)
    y, factor, shift = apply_transform(name, x, np.random.default_rng(0), severity=0.0)
    np.testing.assert_allclose(y, x, atol=1e-12)
    assert factor == 1.0 and shift == 0
    y1, *_ = apply_transform(name, x, np.random.default_rng(3), severity=1.0)
    y2, *_ = apply_transform(name, x, np.random.default_rng(3), severity=1.0)
    np.testing.assert_array_equal(y1, y2)


def test_transform_magnitudes_grow_with_severity():
    t = np.arange(120)
    x = np.exp(-((t - 2) ** 2) / 4.0)
    for name in ("amplitude", "noise", "baseline_wander", "powerline"):
        small, *_ = apply_transform(name, x, np.random.default_rng(5), severity=0.5)
        large, *_ = apply_transform(name, x, np.random.default_rng(5), severity=2.0)
        assert np.abs(large - x).mean() > np.abs(small - x).mean() > 0
    stretched, factor, _ = apply_transform("time_stretch", x, np.random.default_rng(1), severity=1.0, max_change=0.1)
    assert len(stretched) == round(len(x) * factor) and 0.89 < factor < 1.11


def test_noise_reaches_requested_snr():
    x = np.sin(np.linspace(0, 20, 20_000))
    y, *_ = apply_transform("noise", x, np.random.default_rng(0), snr_db=20.0)
    snr = 10 * np.log10(np.var(x) / np.var(y - x))
    assert snr == pytest.approx(20.0, abs=0.3)


def test_unknown_transform_or_class_is_refused():
    with pytest.raises(ValueError, match="unknown transforms"):
        AugmentConfig(transforms={"flip": {}})
    with pytest.raises(ValueError, match="unknown classes"):
        AugmentConfig(classes=("X",))


def test_stage_touches_training_split_only(tmp_path, train):
    from stages.augment import main

    data, out = tmp_path / "in", tmp_path / "out"
    data.mkdir()
    val = _beats({"N": 30, "S": 5}, seed=1)
    train.to_parquet(data / "train.parquet")
    val.to_parquet(data / "val.parquet")
    _beats({"N": 20, "S": 8, "V": 4}, seed=2).to_parquet(data / "test.parquet")  # minority classes: still untouched
    val.to_parquet(data / "holdout.parquet")
    params = tmp_path / "params.yaml"
    params.write_text("augment:\n  enabled: true\n  target_ratio: 10\n  min_beats: 10\n  seed: 3\n")
    metrics = tmp_path / "augment.json"
    assert main(["--data", str(data), "--out", str(out), "--metrics", str(metrics), "--params", str(params)]) == 0
    for name in ("val", "test", "holdout"):
        assert (out / f"{name}.parquet").read_bytes() == (data / f"{name}.parquet").read_bytes()
    augmented = pd.read_parquet(out / "train.parquet")
    assert len(augmented) > len(train) and augmented["augmented"].sum() == len(augmented) - len(train)
