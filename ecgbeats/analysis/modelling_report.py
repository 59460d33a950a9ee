"""The modelling report (``reports/modelling.md``): its values from the evaluation, training, baseline and
learning-curve metrics, already loaded; the ``report_modelling`` study reads them and writes the report."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from ecgbeats.analysis.reporting import fmt, markdown_table, q_note
from ecgbeats.data.aami import CLASS_NAMES

SETS = [("kaggle", "test"), ("interpatient", "test"), ("interpatient", "holdout")]
GOALS = {
    ("kaggle", "accuracy"): 0.989,
    ("kaggle", "macro_f1"): 0.93,
    ("interpatient", "accuracy"): 0.95,
    ("interpatient", "S_Se"): 0.80,
    ("interpatient", "S_+P"): 0.55,
    ("interpatient", "V_Se"): 0.92,
    ("interpatient", "V_+P"): 0.93,
}


def verdict(value: float | None, goal: float) -> str:
    return "–" if value is None else ("met" if value >= goal else f"not met ({fmt(value - goal)})")


def report(
    m: Mapping[tuple[str, str], Mapping[str, Any]],
    train: Mapping[str, Mapping[str, Any]],
    baselines: Mapping[str, Mapping[str, Any]],
    size: Mapping[str, pd.DataFrame],
    tuning: pd.DataFrame,
) -> dict[str, Any]:
    """The template's values: ``m`` the evaluation metrics by (protocol, set) of ``SETS``; ``train``,
    ``baselines`` and ``size`` (learning curve over training-set size) by protocol; ``tuning`` the grid."""
    holdout, ktest, itest = m[("interpatient", "holdout")], m[("kaggle", "test")], m[("interpatient", "test")]

    results = markdown_table(
        ["protocol / set", "beats", "accuracy (95 % CI)", "macro-F1 (95 % CI)", "balanced acc.", "kappa",
         "S Se / +P", "V Se / +P", "F F1", "ECE"],
        [
            [f"{p} {s}", r["beats"],
             f"{fmt(r['accuracy'])} ({fmt(r['ci95']['accuracy']['low'])}–{fmt(r['ci95']['accuracy']['high'])})",
             f"{fmt(r['macro_f1'])} ({fmt(r['ci95']['macro_f1']['low'])}–{fmt(r['ci95']['macro_f1']['high'])})",
             r["balanced_accuracy"], r["cohen_kappa"],
             f"{fmt(r['aami']['S']['Se'])} / {fmt(r['aami']['S']['+P'])}",
             f"{fmt(r['aami']['V']['Se'])} / {fmt(r['aami']['V']['+P'])}",
             r["per_class"]["F"]["f1"], r["ece"]]
            for (p, s), r in m.items()
        ],
    )  # fmt: skip
    achieved = {
        ("kaggle", "accuracy"): ktest["accuracy"],
        ("kaggle", "macro_f1"): ktest["macro_f1"],
        ("interpatient", "accuracy"): holdout["accuracy"],
        ("interpatient", "S_Se"): holdout["aami"]["S"]["Se"],
        ("interpatient", "S_+P"): holdout["aami"]["S"]["+P"],
        ("interpatient", "V_Se"): holdout["aami"]["V"]["Se"],
        ("interpatient", "V_+P"): holdout["aami"]["V"]["+P"],
    }
    goals = markdown_table(
        ["goal", "target", "achieved", "verdict"],
        [[f"{'kaggle test' if p == 'kaggle' else 'interpatient holdout'} {k.replace('_', ' ')}", goal,
          achieved[(p, k)], verdict(achieved[(p, k)], goal)] for (p, k), goal in GOALS.items()],
    )  # fmt: skip
    per_class = {
        key: markdown_table(
            ["class", "support", "Se (recall)", "+P (precision)", "specificity", "F1", "ROC-AUC", "PR-AUC"],
            [
                [
                    c,
                    r["per_class"][c]["support"],
                    r["per_class"][c]["recall"],
                    r["per_class"][c]["precision"],
                    r["per_class"][c]["specificity"],
                    r["per_class"][c]["f1"],
                    r["per_class"][c]["roc_auc"],
                    r["per_class"][c]["pr_auc"],
                ]
                for c in CLASS_NAMES
            ],
        )  # fmt: skip
        for key, r in m.items()
    }
    baseline_rows = []
    for p, s in SETS:
        for name, sets in baselines[p].items():
            r = sets[s]
            baseline_rows.append([f"{p} {s}", name.replace("_", " "), r["accuracy"], r["macro_f1"],
                                  r["aami"]["S"]["Se"], r["aami"]["V"]["Se"]])  # fmt: skip
        r = m[(p, s)]
        baseline_rows.append([f"{p} {s}", "**LightGBM, all features (this model)**", r["accuracy"], r["macro_f1"],
                              r["aami"]["S"]["Se"], r["aami"]["V"]["Se"]])  # fmt: skip
    values = {
        "results_table": results,
        "goals_table": goals,
        "baselines_table": markdown_table(["set", "model", "accuracy", "macro-F1", "S Se", "V Se"], baseline_rows),
        "tuning_table": markdown_table(list(tuning.columns), tuning.to_numpy().tolist(), digits=4),
        "tuning_runs": len(tuning),
        "kaggle_val_spread": tuning["kaggle_val_macro_f1"].max() - tuning["kaggle_val_macro_f1"].min(),
        "kaggle_per_class": per_class[("kaggle", "test")],
        "holdout_per_class": per_class[("interpatient", "holdout")],
        "itest_per_class": per_class[("interpatient", "test")],
        "size_table": markdown_table(
            ["protocol", "fraction", "training beats", "best iteration", "train macro-F1", "val macro-F1"],
            [[p, *row] for p in size for row in size[p].to_numpy().tolist()],
        ),
        "gap_drop": holdout["macro_f1"] - itest["macro_f1"],
        "gap_drop_nsvf": holdout["macro_f1_nsvf"] - itest["macro_f1_nsvf"],
        "q_note": q_note(itest["per_class"]["Q"]["support"], holdout["per_class"]["Q"]["support"]),
        "holdout_confused": ", ".join(f"{k} ({v:,})" for k, v in holdout["most_confused"].items()),
        "kaggle_confused": ", ".join(f"{k} ({v:,})" for k, v in ktest["most_confused"].items()),
        "raw_kaggle_acc": baselines["kaggle"]["lightgbm_raw_samples"]["test"]["accuracy"],
        "raw_kaggle_f1": baselines["kaggle"]["lightgbm_raw_samples"]["test"]["macro_f1"],
        "size_kaggle_first": size["kaggle"]["val_macro_f1"].iloc[0],
        "size_kaggle_last": size["kaggle"]["val_macro_f1"].iloc[-1],
        "size_inter_first": size["interpatient"]["val_macro_f1"].iloc[0],
        "size_inter_last": size["interpatient"]["val_macro_f1"].iloc[-1],
        **{f"{p}_{k}": v for p in train for k, v in train[p].items()},
        **{f"ktest_{k}": ktest[k] for k in ("accuracy", "macro_f1")},
        **{f"itest_{k}": itest[k] for k in ("accuracy", "macro_f1", "macro_f1_nsvf")},
        **{f"holdout_{k}": holdout[k] for k in ("accuracy", "macro_f1", "macro_f1_nsvf")},
    }
    return values
