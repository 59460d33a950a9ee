from __future__ import annotations

from scripts.reproduce import compare_metrics


def test_differences_are_judged_by_gate_tolerance_or_the_default_and_timings_are_ignored():
    committed = {"m.json": {"accuracy": 0.99, "macro_f1": 0.90, "beats": 10, "training_seconds": 30.0}}
    reproduced = {"m.json": {"accuracy": 0.989, "macro_f1": 0.90, "beats": 11, "training_seconds": 45.0}}
    rows, compared = compare_metrics(committed, reproduced, {("m.json", "accuracy"): 0.002}, 1e-6)
    assert compared == 3
    by_key = {r["key"]: r for r in rows}
    assert set(by_key) == {"accuracy", "beats"}
    assert by_key["accuracy"]["ok"] and abs(by_key["accuracy"]["diff"] - 0.001) < 1e-12
    assert not by_key["beats"]["ok"]


def test_missing_file_or_key_fails():
    rows, _ = compare_metrics({"m.json": {"a": 1.0}, "n.json": {"b": 2.0}}, {"m.json": {}}, {}, 1e-6)
    assert {(r["path"], r["key"]) for r in rows} == {("m.json", "a"), ("n.json", "b")}
    assert not any(r["ok"] for r in rows)
