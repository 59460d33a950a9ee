"""The modelling report (``reports/modelling.md``): its values from the evaluation, training, baseline and
learning-curve metrics, already loaded; the ``report_modelling`` study reads them and writes the report."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from ecgbeats.analysis.reporting import fmt, markdown_table, q_note
from ecgbeats.data.aami import CLASS_NAMES
from ecgbeats.modelling.evaluation import headline_figures

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


# Published DS1 -> DS2 results (S Se, S +P, V Se, V +P, in %), as their papers report them
ANCHORS = [
    ("de Chazal et al. 2004, IEEE Trans Biomed Eng 51(7):1196-1206 (linear discriminants, RR and morphology)",
     76.0, 38.0, 77.0, 82.0),
    ("Zhang et al. 2014, Comput Biol Med 46:79-89 (disease-specific feature selection, SVMs)", 79.1, 36.0, 85.5, 92.7),
    ("Shi et al. 2019, Comput Methods Programs Biomed 171:1-10 (weighted XGBoost, feature families)",
     91.7, 46.2, 95.1, 88.1),
    ("Zhang J. et al. 2021 (subject-invariant CNN)", 78.8, 90.8, 92.5, 94.3),
    ("Teijeiro et al. 2018, IEEE J Biomed Health Inform 22(2):409-420 (abductive interpretation, per-record "
     "clustering, all 48 records, no training)", 85.1, 84.5, 92.7, 92.4),
]  # fmt: skip
# the goals for unseen patients, on DS2 annotated beats and end to end
RECORD_GOALS = {"accuracy": 0.95, "S_Se": 0.85, "S_+P": 0.70, "V_Se": 0.93, "V_+P": 0.90, "macro_f1_nsvf": 0.75,
                "F_+P": 0.30}  # fmt: skip


def record_values(
    cv: Mapping[str, Any],
    holdout: Mapping[str, Any],
    ec57: Mapping[str, Any],
    beat_rows: Mapping[str, Any],
    reference: Mapping[str, Any],
    served: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """The template's values for the reference model (``cv``, ``holdout``, ``ec57``): cross-validation
    (per DS1 record too), the rhythm rules, DS2 on both paths, goals, anchors, the sinus reference on the
    figure's records; beside it the served record model (``served``: its cv, holdout and ec57) and the
    beat-row model."""
    rows = {
        "reference model, DS1 cross-validation (out-of-fold)": {
            **headline_figures({**cv["pooled"], "per_class": cv["per_class"]})
        },
        "reference model, DS2 annotated R peaks": headline_figures(holdout),
        "reference model, DS2 end to end (EC57, detected beats)": headline_figures(ec57["gross"]),
        "served record model (mV), DS1 cross-validation (out-of-fold)": {
            **headline_figures({**served["cv"]["pooled"], "per_class": served["cv"]["per_class"]})
        },
        "served record model (mV), DS2 annotated R peaks": headline_figures(served["holdout"]),
        "served record model (mV), DS2 end to end (EC57)": headline_figures(served["ec57"]["gross"]),
        "beat-row interpatient model, DS2 annotated R peaks": headline_figures(beat_rows),
    }
    keys = ["accuracy", "macro_f1_nsvf", "S_Se", "S_+P", "V_Se", "V_+P", "F_Se", "F_+P"]
    comparison = markdown_table(
        ["model and set", "accuracy", "macro-F1 NSVF", "S Se", "S +P", "V Se", "V +P", "F Se", "F +P"],
        [[name, *(r[k] for k in keys)] for name, r in rows.items()],
    )
    goals = markdown_table(
        ["goal", "target", "DS2 annotated", "DS2 end to end"],
        [[k.replace("_", " "), target, rows["reference model, DS2 annotated R peaks"][k],
          rows["reference model, DS2 end to end (EC57, detected beats)"][k]] for k, target in RECORD_GOALS.items()],
    )  # fmt: skip

    def percent(value: float | None) -> str:
        return "–" if value is None else fmt(100 * value, 1)

    ours = (("annotated", rows["reference model, DS2 annotated R peaks"]),
            ("end to end", rows["reference model, DS2 end to end (EC57, detected beats)"]))  # fmt: skip
    anchors = markdown_table(
        ["DS1 -> DS2 result", "S Se", "S +P", "V Se", "V +P"],
        [[name, *values] for name, *values in ANCHORS]
        + [[f"**this project, reference model, {path}**", *(percent(r[k]) for k in ("S_Se", "S_+P", "V_Se", "V_+P"))]
           for path, r in ours],
        digits=1,
    )  # fmt: skip
    per_record = markdown_table(
        ["record", "reference beats", "detected", "missed", "extra", "QRS Se", "QRS +P", "accuracy", "S Se", "S +P",
         "V Se", "V +P"],
        [[r, v["reference_beats"], v["detected_beats"], v["missed"], v["extra"], v["qrs_Se"], v["qrs_+P"],
          v["accuracy"], v["S_Se"], v["S_+P"], v["V_Se"], v["V_+P"]] for r, v in ec57["per_record"].items()],
    )  # fmt: skip
    cv_records = markdown_table(
        ["record", "beats", "accuracy", "S beats", "S Se", "S +P", "V beats", "V Se", "V +P"],
        [[r, v["beats"], v["accuracy"], v["S_beats"], v["S_Se"], v["S_+P"], v["V_beats"], v["V_Se"], v["V_+P"]]
         for r, v in cv["per_record"].items()],
    )  # fmt: skip
    rules = cv["rhythm_rules"]
    reference_rows = [
        [record, name, c["beats"], c["rr_prev_ref_median"], c["same_qrs_share"],
         ", ".join(f"{k} {n:,}" for k, n in c["called"].items() if n)]
        for record, r in reference.items() for name, c in r["by_true_class"].items()
    ]  # fmt: skip
    gross = ec57["gross"]
    spread = cv["spread"]
    return {
        "record_cv_records": cv_records,
        "record_cv_model_only": cv["model_only"]["macro_f1_nsvf"],
        "record_cv_with_rules": cv["pooled"]["macro_f1_nsvf"],
        "record_rules": (
            "off"
            if rules["premature"] is None and not rules["fibrillation"]
            else ", ".join(
                [f"premature below {rules['premature']} of the sinus RR"] * (rules["premature"] is not None)
                + [f"P-wave correlation below {rules['p_corr']}"] * (rules["p_corr"] is not None)
                + [f"QRS correlation at least {rules['qrs_corr']}"]
                + ["S in atrial fibrillation is N"] * bool(rules["fibrillation"])
            )
        ),
        "record_reference": markdown_table(
            ["record", "annotated class", "beats", "RR / sinus RR (median)", "the reference's QRS", "called"],
            reference_rows,
        ),
        "record_comparison": comparison,
        "record_goals": goals,
        "record_anchors": anchors,
        "record_ec57_records": per_record,
        "record_qrs_se": gross["qrs_Se"],
        "record_qrs_pp": gross["qrs_+P"],
        "record_missed": f"{gross['missed']:,}",
        "record_extra": f"{gross['extra']:,}",
        "record_matched": f"{gross['matched']:,}",
        "record_cv_folds": len(cv["folds"]),
        "record_cv_sd": spread["macro_f1_nsvf"]["sd"],
        "record_cv_min": spread["macro_f1_nsvf"]["min"],
        "record_cv_max": spread["macro_f1_nsvf"]["max"],
        "record_cv_rounds": spread["best_iteration"]["median"],
    }


EVENT_NAMES = {"V_couplet": "V couplets", "V_run": "V runs (3 or more)", "S_run": "S runs (3 or more)",
               "pause": "pauses (2 s or more)", "AF_episode": "atrial fibrillation episodes (30 s or more)",
               "AF_time": "atrial fibrillation time"}  # fmt: skip


def event_values(reference: Mapping[str, Any], served: Mapping[str, Any]) -> dict[str, Any]:
    """The template's values for the events of DS2 end to end (``metrics/record*/events.json``): gross for
    both models, per record for the reference model."""

    def cell(g: Mapping[str, Any] | None, key: str) -> str:
        if g is None:
            return "– (no rhythm context)"
        count = f"{g['reference_s']:,.0f} s / {g['detected_s']:,.0f} s" if key == "AF_time" else \
            f"{g['reference']} / {g['detected']}"  # fmt: skip
        return f"{fmt(g['Se'])} / {fmt(g['+P'])} ({count})"

    gross = markdown_table(
        ["event", "reference model: Se / +P (reference / detected)", "served record model: Se / +P"],
        [[name, cell(reference["gross"][k], k), cell(served["gross"][k], k)] for k, name in EVENT_NAMES.items()]
        + [["V beats per record, mean absolute error", reference["gross"]["V_count_mae_per_record"],
            served["gross"]["V_count_mae_per_record"]],
           ["S beats per record, mean absolute error", reference["gross"]["S_count_mae_per_record"],
            served["gross"]["S_count_mae_per_record"]]],
    )  # fmt: skip

    def pair(v: Mapping[str, Any] | None, key: str = "") -> str:
        if v is None:
            return "–"
        if key == "AF_time":
            return f"{v['reference_s']:,.0f} / {v['detected_s']:,.0f}"
        return f"{v['reference']} / {v['detected']}"

    records = markdown_table(
        ["record", "V couplets", "V runs", "S runs", "pauses", "AF s", "V beats", "S beats"],
        [[r, pair(v["V_couplet"]), pair(v["V_run"]), pair(v["S_run"]), pair(v["pause"]),
          pair(v["AF_time"], "AF_time"), pair(v["V_count"]), pair(v["S_count"])]
         for r, v in reference["per_record"].items()],
    )  # fmt: skip
    return {"record_events": gross, "record_events_records": records}
