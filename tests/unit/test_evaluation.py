from __future__ import annotations

import numpy as np
import pytest

from ecgbeats.modelling.evaluation import bootstrap_ci, confused_pairs, evaluate_predictions, expected_calibration_error


def one_hot(pred, k=5, confidence=1.0):
    proba = np.full((len(pred), k), (1 - confidence) / (k - 1))
    proba[np.arange(len(pred)), pred] = confidence
    return proba


def test_metrics_on_a_hand_made_confusion_example():
    # 6 N (5 right, 1 called S), 4 S (3 right, 1 called N), 2 V (both right); no F or Q beats
    y_true = np.array([0] * 6 + [1] * 4 + [2] * 2)
    y_pred = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 2, 2])
    report = evaluate_predictions(y_true, one_hot(y_pred), n_boot=0)
    assert report["accuracy"] == pytest.approx(10 / 12)
    n, s, v = (report["per_class"][c] for c in "NSV")
    assert n["precision"] == pytest.approx(5 / 6) and n["recall"] == pytest.approx(5 / 6)
    assert s["precision"] == pytest.approx(3 / 4) and s["recall"] == pytest.approx(3 / 4)
    assert s["specificity"] == pytest.approx(7 / 8)  # 8 non-S beats, 1 called S
    assert v["f1"] == 1.0 and v["support"] == 2
    # macro-F1 over the classes present (N, S, V); F and Q have no beats and no F1
    assert report["macro_f1"] == pytest.approx((5 / 6 + 3 / 4 + 1) / 3)
    assert report["per_class"]["F"]["f1"] is None and report["per_class"]["F"]["support"] == 0
    assert report["aami"]["S"] == {"Se": 0.75, "+P": 0.75}
    assert report["balanced_accuracy"] == pytest.approx((5 / 6 + 3 / 4 + 1) / 3)
    assert confused_pairs(y_true, y_pred)[:2] == [
        {"true": "N", "predicted": "S", "count": 1},
        {"true": "S", "predicted": "N", "count": 1},
    ]


def test_perfectly_calibrated_confidence_has_no_calibration_error():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 5, 20000)
    proba = one_hot(y_true, confidence=0.7)
    wrong = rng.random(len(y_true)) < 0.3  # 70 % of the confident predictions are right
    y_true = np.where(wrong, (y_true + 1) % 5, y_true)
    assert expected_calibration_error(y_true, proba) < 0.01
    assert expected_calibration_error(y_true, one_hot(proba.argmax(axis=1), confidence=1.0)) == pytest.approx(
        0.3, abs=0.01
    )


def test_bootstrap_interval_contains_the_estimate_and_narrows_with_data():
    rng = np.random.default_rng(1)
    small_true = rng.integers(0, 5, 500)
    small_pred = np.where(rng.random(500) < 0.9, small_true, (small_true + 1) % 5)
    big_true = np.tile(small_true, 20)
    big_pred = np.tile(small_pred, 20)
    small = bootstrap_ci(small_true, small_pred, n_boot=300, seed=0)["accuracy"]
    big = bootstrap_ci(big_true, big_pred, n_boot=300, seed=0)["accuracy"]
    accuracy = np.mean(small_true == small_pred)
    assert small["low"] < accuracy < small["high"]
    assert (big["high"] - big["low"]) < (small["high"] - small["low"]) / 2


def test_macro_f1_over_n_s_v_f_leaves_a_handful_of_q_beats_out():
    # N and V all right; the one Q beat called N: it weighs a fifth of macro-F1, nothing of the N, S, V, F mean
    y_true = np.array([0] * 8 + [1] * 2 + [2] * 2 + [3] * 2 + [4])
    y_pred = np.array([0] * 8 + [1, 0] + [2] * 2 + [3, 3] + [0])
    report = evaluate_predictions(y_true, one_hot(y_pred), n_boot=0)
    f1_n, f1_s = 2 * 8 / (8 + 10), 2 / 3
    assert report["macro_f1_nsvf"] == pytest.approx((f1_n + f1_s + 1 + 1) / 4)
    assert report["macro_f1"] == pytest.approx((f1_n + f1_s + 1 + 1 + 0) / 5)
    no_q = evaluate_predictions(y_true[:-1], one_hot(y_pred[:-1]), n_boot=0)
    assert no_q["macro_f1"] == pytest.approx(no_q["macro_f1_nsvf"])
