"""A record model's decisions, each made on the cross-validation over the DS1 patients.

    python -m studies.record_cv --record data/processed/record/ds1.parquet \\
        --beats data/processed/beats_interpatient.parquet --model-key model --out metrics/record/cv_variants.json \\
        --table plots/record/cv_variants/variants.csv --report reports/record_cv.md

Every variant changes one thing of ``record.<model-key>`` (a feature group, the second lead, the class
weights, the tree shape) or, for the served model, swaps the representation for the Kaggle beat rows of
the beat-row interpatient model; all use the same record-disjoint folds. The figures are the trees'
own, without the rhythm rules (the crossval stage chooses those on the chosen model, ``cv.json``). The
pooled out-of-fold figures and the SD of macro-F1 over folds say which choices pay and how far to trust
the difference. For a model with the sinus reference, the rhythm context's thresholds (what counts as
atrial fibrillation: ``record.beat.reference.af_*``) are judged the same way: each pair's agreement with
the annotated atrial fibrillation and flutter of the DS1 records (beats inside ``(AFIB`` or ``(AFL``
rhythm notes), and the out-of-fold figures of the chosen model with the rhythm rules chosen for it. DS2
is not read.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import wfdb

from ecgbeats.analysis.reporting import markdown_table
from ecgbeats.features.groups import build_features, protocol_groups
from ecgbeats.features.record import feature_columns, model_config
from ecgbeats.features.reference import AF_LABEL, rhythm_context
from ecgbeats.io import write_csv, write_json, write_text
from ecgbeats.modelling.crossval import cross_validate, patient_folds
from ecgbeats.modelling.ec57 import AF_RHYTHMS, rhythm_spans
from ecgbeats.modelling.evaluation import evaluate_predictions
from ecgbeats.modelling.rhythm_rules import choose_rules, rule_grid
from stages.common import load_params, setup_logging

log = logging.getLogger("studies.record_cv")

# per model (record.<key>): name -> (what changes, overrides of the model's block); groups are removed
# from, or added to, the chosen ones
COMMON: dict[str, tuple[str, dict[str, Any]]] = {
    "+ second lead": ("the record's second signal too (V1 in 20 of 22 DS1 records)", {"leads": 2}),
    "- rhythm": ("without RR against the preceding beats", {"drop": "rhythm"}),
    "- patient_rhythm": ("without RR against the patient's 5-minute median", {"drop": "patient_rhythm"}),
    "- template": ("without the running dominant beat", {"drop": "template"}),
    "class weights sqrt": ("square root of the balanced weights", {"lightgbm": {"class_weight": "sqrt"}}),
    "no class weights": ("every beat weighs one", {"lightgbm": {"class_weight": "none"}}),
    "shallow trees": ("7 leaves, 1,000 beats per leaf", {"lightgbm": {"num_leaves": 7, "min_child_samples": 1000}}),
    "extra trees": ("randomised split thresholds", {"lightgbm": {"extra_trees": True}}),
}
VARIANTS: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
    "model": {
        "chosen": ("record.model as in params.yaml", {}),
        "- window": ("without the raw window samples", {"drop": "window"}),
        "- morphology": ("without the absolute shape measures", {"drop": "morphology"}),
        "rhythm + template": ("only the two groups whose removal costs most", {"keep": ["rhythm", "template"]}),
        **COMMON,
        "Kaggle beat rows": ("the beat-row interpatient model's groups on the same folds", {"beat_rows": True}),
    },
    "reference_model": {
        "chosen": ("record.reference_model as in params.yaml", {}),
        "+ window + morphology": ("the window samples and shape measures in mV too", {"add": ["window", "morphology"]}),
        "+ morphology": ("the shape measures in mV too", {"add": ["morphology"]}),
        "- reference": ("without the sinus reference cluster and the rhythm context", {"drop": "reference"}),
        "- rhythm_refs": (
            "without the mean, upper-percentile and previous-interval RR references",
            {"drop": "rhythm_refs"},
        ),
        **COMMON,
    },
}
# the rhythm context's thresholds tried (record.beat.reference): RR irregularity x share without a P wave
AF_IRREGULARITY = (0.08, 0.1, 0.12)
AF_NO_P_SHARE = (0.5, 0.6, 0.7, 0.8)
COLUMNS = ("accuracy", "macro_f1_nsvf", "S_Se", "S_+P", "V_Se", "V_+P", "F_+P")


def variant_inputs(
    key: str, name: str, record: dict[str, Any], train: dict[str, Any], ds1: pd.DataFrame, beats: pd.DataFrame
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, dict[str, Any]]:
    """Features, labels, records and LightGBM params of one variant of the model ``record.<key>``."""
    _, change = VARIANTS[key][name]
    chosen = dict(record[key])
    params = {**train, **chosen.get("lightgbm", {}), **change.get("lightgbm", {})}
    if change.get("beat_rows"):
        rows = beats[beats["record"].isin(ds1["record"].unique())].reset_index(drop=True)
        groups = [g for g in protocol_groups(train["features"], "interpatient") if g != "tsfresh"]
        return build_features(rows, groups), rows["label"].to_numpy(np.int64), rows["record"].to_numpy(), params
    if "drop" in change:
        chosen["groups"] = [g for g in chosen["groups"] if g != change["drop"]]
    if "add" in change:
        chosen["groups"] = [*chosen["groups"], *(g for g in change["add"] if g not in chosen["groups"])]
    if "keep" in change:
        chosen["groups"] = list(change["keep"])
    if "leads" in change:
        chosen["leads"] = change["leads"]
    columns = feature_columns(model_config({**record, key: chosen}, key))
    return ds1[columns], ds1["label"].to_numpy(np.int64), ds1["record"].to_numpy(), params


def annotated_af(raw: Path, ds1: pd.DataFrame) -> np.ndarray:
    """Per DS1 beat, whether its R peak lies in an annotated stretch of atrial fibrillation or flutter."""
    inside = np.zeros(len(ds1), dtype=bool)
    records = ds1["record"].to_numpy()
    peaks = ds1["r_peak"].to_numpy()
    for record in pd.unique(records):
        notes = wfdb.rdann(str(raw / str(record)), "atr")
        rhythm = [i for i, note in enumerate(notes.aux_note) if note.startswith("(")]
        spans = rhythm_spans(notes.sample[rhythm], [notes.aux_note[i] for i in rhythm], float(notes.fs), np.inf,
                             AF_RHYTHMS)  # fmt: skip
        rows = np.flatnonzero(records == record)
        for start, end in spans:
            seconds = peaks[rows] / float(notes.fs)
            inside[rows[(seconds >= start) & (seconds < end)]] = True
    return inside


def af_threshold_table(
    ds1: pd.DataFrame, oof: np.ndarray, af: np.ndarray, record: dict[str, Any], key: str
) -> list[dict[str, Any]]:
    """Each pair of rhythm-context thresholds: its agreement with the annotated atrial fibrillation
    (beats), and the chosen model's out-of-fold figures with the rhythm rules chosen under it."""
    config = model_config(record, key)
    y = ds1["label"].to_numpy(np.int64)
    grid = rule_grid(record["rules"])
    rows = []
    for irregularity in AF_IRREGULARITY:
        for no_p in AF_NO_P_SHARE:
            reference = dataclasses.replace(config.reference, af_irregularity=irregularity, af_no_p_share=no_p)
            flagged = rhythm_context(ds1["ctx_irregularity"].to_numpy(), ds1["ctx_no_p_share"].to_numpy(),
                                     reference) == AF_LABEL  # fmt: skip
            rules, _ = choose_rules(y, oof, ds1, grid, reference)
            report = evaluate_predictions(y, rules.apply(oof, ds1, reference), n_boot=0)
            rows.append({
                "af_irregularity": irregularity, "af_no_p_share": no_p,
                "af_Se": round(float((flagged & af).sum() / max(af.sum(), 1)), 4),
                "af_+P": round(float((flagged & af).sum() / max(flagged.sum(), 1)), 4),
                "rules": rules.to_dict(), "macro_f1_nsvf": report["macro_f1_nsvf"],
                "S_Se": report["per_class"]["S"]["recall"], "S_+P": report["per_class"]["S"]["precision"],
                "chosen": irregularity == config.reference.af_irregularity and no_p == config.reference.af_no_p_share,
            })  # fmt: skip
    return rows


def af_threshold_section(rows: list[dict[str, Any]], af_beats: int, records: list[str]) -> str:
    body = [
        [f"{r['af_irregularity']:g}", f"{r['af_no_p_share']:g}" + (" (params.yaml)" if r["chosen"] else ""),
         f"{r['af_Se']:.3f}", f"{r['af_+P']:.3f}", f"{r['macro_f1_nsvf']:.3f}", f"{r['S_Se']:.3f}",
         f"{r['S_+P']:.3f}", f"{r['rules']['premature']}", str(r["rules"]["fibrillation"]).lower()]
        for r in rows
    ]  # fmt: skip
    header = ["RR irregularity at least", "share without a P wave at least", "AF beats Se", "AF beats +P",
              "macro-F1 NSVF with rules", "S Se", "S +P", "rule: premature below", "rule: fibrillation"]  # fmt: skip
    return (
        "\n## The rhythm context: what counts as atrial fibrillation\n\n"
        "A beat's rhythm context is atrial fibrillation when the RR intervals before it are irregular "
        "(`record.beat.reference.af_irregularity`) and most of them lack a P wave (`af_no_p_share`); in it the "
        "rhythm rules do not call an early beat S. Each pair of thresholds against the "
        f"{af_beats:,} DS1 beats inside annotated atrial fibrillation or flutter (records "
        f"{', '.join(records) or 'none'}), and the chosen model's out-of-fold figures with the rhythm rules "
        "chosen under it (the crossval stage's choice). DS1 alone would lower the share without a P wave "
        "(fibrillatory waves pass the P-wave test now and then); the share stays where a rhythm whose ectopic "
        "beats are the majority, between sinus beats with P waves (as in DS2 record 232, which DS1 lacks), is not "
        "called fibrillation (`tests/unit/test_reference.py`), since there the rules would make its S beats N:\n\n"
        + markdown_table(header, body)
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--record", required=True, type=Path, help="DS1 record beats (record_beats stage)")
    parser.add_argument("--beats", required=True, type=Path, help="the Kaggle beat table (ingest stage)")
    parser.add_argument("--raw", type=Path, help="the raw records (their rhythm notes; a model with a reference)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--table", required=True, type=Path)
    parser.add_argument("--report", required=True, type=Path)
    parser.add_argument("--model-key", default="model", help="the record.<key> model whose choices are measured")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    setup_logging()
    record, train = load_params("record", args.params), load_params("train", args.params)
    ds1, beats = pd.read_parquet(args.record), pd.read_parquet(args.beats)
    folds = patient_folds(ds1["record"].to_numpy(), ds1["label"].to_numpy(), int(record["cv"]["folds"]),
                          int(record["cv"]["seed"]))  # fmt: skip
    fold_of = dict(zip(ds1["record"], folds, strict=False))  # the same record-disjoint folds for every variant
    results: dict[str, Any] = {}
    oof: dict[str, np.ndarray] = {}
    for name, (what, _) in VARIANTS[args.model_key].items():
        x, y, records, params = variant_inputs(args.model_key, name, record, train, ds1, beats)
        cv = cross_validate(x.reset_index(drop=True), y, np.array([fold_of[r] for r in records]), params,
                            seed=int(train["seed"]))  # fmt: skip
        summary = cv["summary"]
        oof[name] = cv["oof"]
        results[name] = {"change": what, "features": int(x.shape[1]), "beats": len(y), **summary["pooled"],
                         "macro_f1_nsvf_fold_sd": summary["macro_f1_nsvf"]["sd"],
                         "fold_macro_f1_nsvf": [f["macro_f1_nsvf"] for f in cv["folds"]],
                         "best_iteration": summary["best_iteration"]["median"]}  # fmt: skip
        log.info("%-20s macro-F1 NSVF %.4f (fold SD %.3f)", name, summary["pooled"]["macro_f1_nsvf"],
                 summary["macro_f1_nsvf"]["sd"])  # fmt: skip
    af_rows: list[dict[str, Any]] = []
    section = ""
    if "reference" in model_config(record, args.model_key).groups:
        if args.raw is None:
            parser.error(f"record.{args.model_key} has the sinus reference: --raw is needed for its rhythm notes")
        af = annotated_af(args.raw, ds1)
        af_rows = af_threshold_table(ds1, oof["chosen"], af, record, args.model_key)
        af_records = sorted(ds1.loc[af, "record"].unique().tolist())
        section = af_threshold_section(af_rows, int(af.sum()), af_records)
    write_json({"folds": int(record["cv"]["folds"]), "variants": results, "af_thresholds": af_rows}, args.out)
    table = pd.DataFrame([{"variant": n, **r} for n, r in results.items()])
    write_csv(table, args.table)
    base = results["chosen"]
    for r in results.values():  # the same folds: the spread of the per-fold differences is the noise
        paired = np.subtract(r["fold_macro_f1_nsvf"], base["fold_macro_f1_nsvf"])
        r["vs_chosen"] = round(r["macro_f1_nsvf"] - base["macro_f1_nsvf"], 4)
        r["vs_chosen_fold_mean"] = round(float(paired.mean()), 4)
        r["vs_chosen_fold_se"] = round(float(paired.std(ddof=1) / np.sqrt(len(paired))), 4)
    rows = [
        [n, r["change"], r["features"], *(f"{r[c]:.3f}" if r[c] is not None else "-" for c in COLUMNS),
         f"{r['vs_chosen']:+.3f}", f"{r['vs_chosen_fold_mean']:+.3f} ± {r['vs_chosen_fold_se']:.3f}"]
        for n, r in results.items()
    ]  # fmt: skip
    header = ["variant", "change", "features", "accuracy", "macro-F1 NSVF", "S Se", "S +P", "V Se", "V +P", "F +P",
              "pooled vs chosen", "per fold vs chosen (mean ± SE)"]  # fmt: skip
    write_text(
        f"# The decisions of the record model `record.{args.model_key}`, on the cross-validation over the DS1 "
        "patients\n\n"
        "Generated by `studies/record_cv.py` (`make studies`). Pooled out-of-fold figures over the "
        f"{len(ds1):,} DS1 beats of {ds1['record'].nunique()} records in {record['cv']['folds']} record-disjoint "
        "folds; each fold is predicted by a model that never saw its patients and early-stopped on another "
        "fold. Macro-F1 is over N, S, V and F; the figures are the trees' own, before the rhythm rules that "
        f"the crossval stage chooses for the chosen model (`{args.out.parent.as_posix()}/cv.json`, "
        "`rhythm_rules`). Every "
        "variant uses the same folds, so a difference is judged "
        "against its own per-fold spread: `per fold vs chosen` is the mean of the five paired fold differences "
        "and its standard error; a difference within about two standard errors decides nothing. DS2 is not "
        "read here.\n\n" + markdown_table(header, rows) + "\n" + section,
        args.report,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
