"""Stage eda: figures, plot data, metrics and reports/eda.md describing the beat table and its splits."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecgbeats import eda
from ecgbeats.aami import CLASS_DESCRIPTIONS, CLASS_NAMES, DS1, DS2, PACED
from ecgbeats.beats import BEAT_FS, BEAT_SAMPLES
from ecgbeats.dataset import SAMPLE_COLUMNS, load_beats
from ecgbeats.io import atomic_dir, atomic_path, write_csv, write_json
from ecgbeats.plots import save
from ecgbeats.reporting import fmt, render
from ecgbeats.reporting import markdown_table as _markdown_table
from ecgbeats.splits import INTERPATIENT_SETS, KAGGLE_SETS
from stages.common import load_params, setup_logging

log = logging.getLogger("stages.eda")

PROTOCOL_SETS = {"kaggle": KAGGLE_SETS, "interpatient": INTERPATIENT_SETS}
NEIGHBOUR_PAIRS = {  # name -> (protocol, training set, evaluated set)
    "kaggle test": ("kaggle", "train", "test"),
    "interpatient test": ("interpatient", "train", "test"),
    "interpatient holdout": ("interpatient", "train", "holdout"),
}
FIGURES = (
    "class_distribution.png",
    "record_composition.png",
    "class_mean_beat.png",
    "example_beats.png",
    "length_rr.png",
    "position_stats.png",
    "suspicious_beats.png",
    "pca.png",
    "correlation.png",
    "patient_variability.png",
)
PLOT_DATA = (
    "class_distribution.csv",
    "class_mean_beat.csv",
    "position_stats.csv",
    "padding_by_position.csv",
    "length_distribution.csv",
    "rr_ratio_distribution.csv",
)


def record_group(record: str) -> str:
    return "DS1" if record in DS1 else "DS2" if record in DS2 else "paced" if record in PACED else "other"


def pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{100 * value:.{digits}f} %"


def count_share(summary: dict[str, Any], name: str) -> str:
    return f"{summary['counts'][name]:,} ({pct(summary['shares'][name], 2)})"


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A markdown table in which NaN (an empty class, a missing value) shows as a dash."""
    clean = [[None if isinstance(cell, float) and not np.isfinite(cell) else cell for cell in row] for row in rows]
    return _markdown_table(headers, clean)


def factor(value: float | None) -> str:
    return "too few to multiply" if value is None else f"×{value:.1f}"


def ratio(a: float | None, b: float = 1) -> str | None:
    return None if a is None or not b else f"{a / b:.0f} : 1"


def read_sets(directory: Path) -> dict[str, pd.DataFrame]:
    """Every set of both protocols: label and record always, samples for the neighbour check."""
    need_samples = {(p, s) for p, *sets in NEIGHBOUR_PAIRS.values() for s in sets}
    sets = {}
    for protocol, names in PROTOCOL_SETS.items():
        for name in names:
            path = directory / protocol / f"{name}.parquet"
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing; run the split@{protocol} stage first")
            columns = ["record", "label"] + (SAMPLE_COLUMNS if (protocol, name) in need_samples else [])
            sets[f"{protocol} {name}"] = pd.read_parquet(path, columns=columns)
    return sets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--beats", required=True, type=Path, help="beat table parquet (ingest stage)")
    parser.add_argument("--splits", required=True, type=Path, help="directory holding <protocol>/<set>.parquet")
    parser.add_argument("--template", required=True, type=Path, help="report template")
    parser.add_argument("--report", required=True, type=Path, help="report markdown to write")
    parser.add_argument("--plots", required=True, type=Path, help="directory for figures and plot data")
    parser.add_argument("--metrics", required=True, type=Path, help="metrics JSON to write")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    setup_logging()
    started = time.perf_counter()
    p = load_params("eda", args.params)
    seed = int(p["seed"])

    beats = load_beats(args.beats)
    if beats["record"].isna().any():
        print("eda needs the record of every beat (ingest.source: wfdb); the Kaggle CSVs have none", file=sys.stderr)
        return 1
    sets = read_sets(args.splits)
    labels = beats["label"].to_numpy(dtype=np.int64)
    records = beats["record"].to_numpy(dtype=object)
    samples = beats[SAMPLE_COLUMNS].to_numpy(dtype=np.float32)
    lengths = beats["length"].to_numpy(dtype=np.int64)
    log.info("%d beats, %d records; %d sets", len(beats), len(set(records)), len(sets))

    # classes, per protocol and set
    summaries = {"all beats": eda.class_summary(labels, records)}
    summaries |= {
        name: eda.class_summary(f["label"].to_numpy(), f["record"].to_numpy(dtype=object)) for name, f in sets.items()
    }
    composition = eda.record_composition(records, labels)
    groups = {r: record_group(r) for r in composition.index}
    concentration = eda.class_concentration(composition, float(p["concentration_share"]))
    ktrain, ktest = sets["kaggle train"], sets["kaggle test"]
    itrain, iholdout = sets["interpatient train"], sets["interpatient holdout"]
    overlap = eda.record_overlap(
        ktrain["record"].to_numpy(dtype=object),
        ktrain["label"].to_numpy(),
        ktest["record"].to_numpy(dtype=object),
        ktest["label"].to_numpy(),
    )
    holdout_overlap = eda.record_overlap(
        itrain["record"].to_numpy(dtype=object),
        itrain["label"].to_numpy(),
        iholdout["record"].to_numpy(dtype=object),
        iholdout["label"].to_numpy(),
    )
    train_composition = eda.record_composition(itrain["record"].to_numpy(dtype=object), itrain["label"].to_numpy())
    train_concentration = eda.class_concentration(train_composition, float(p["concentration_share"]))
    train_counts = summaries["interpatient train"]["counts"]
    max_ratio, min_beats = float(p["augment_max_ratio"]), int(p["augment_min_beats"])
    plan = eda.augmentation_plan(train_counts, max_ratio, min_beats)
    kaggle_plan = eda.augmentation_plan(summaries["kaggle train"]["counts"], max_ratio, min_beats)
    log.info("classes and records done (%.1f s)", time.perf_counter() - started)

    # shape, length, rhythm
    profiles = eda.class_profiles(samples, labels)
    stats = eda.position_stats(samples)
    padding = eda.padding_by_position(lengths, labels)
    pad_share = eda.padding_share(lengths)
    pad_by_class = {c: float(pad_share[labels == i].mean()) for i, c in enumerate(CLASS_NAMES) if (labels == i).any()}
    rhythm = eda.rhythm_frame(beats)
    rhythm_table = eda.rhythm_summary(rhythm, labels, float(p["premature_ratio"]))
    rng = np.random.default_rng(seed)
    n_reference = int((labels == 0).sum())
    keep = np.ones(len(labels), dtype=bool)
    if n_reference > int(p["auc_max_reference"]):  # subsample N for the rank AUCs: same estimate, faster
        drop = rng.choice(np.flatnonzero(labels == 0), size=n_reference - int(p["auc_max_reference"]), replace=False)
        keep[drop] = False
    rhythm_auc, sample_auc = eda.separability(rhythm[keep].reset_index(drop=True), samples[keep], labels[keep])
    length_corr = {
        col: float(rhythm[["length_ms", col]].dropna().corr().iloc[0, 1]) for col in ("rr_prev", "rr_next", "rr_local")
    }
    cut_ms = BEAT_SAMPLES * 1000 / BEAT_FS
    length_hist = eda.histogram_by_class(rhythm["length_ms"], labels, np.arange(0, cut_ms + 2 * 25, 25.0), "length_ms")
    ratio_hist = eda.histogram_by_class(
        rhythm["rr_prev/rr_local"], labels, np.arange(0.2, 2.02, 0.04), "rr_prev_over_local"
    )
    log.info("shape and rhythm done (%.1f s)", time.perf_counter() - started)

    # suspicious beats
    flags = eda.suspicious_beats(
        samples,
        lengths,
        labels,
        flat_std=float(p["flat_std"]),
        clip_run=int(p["clip_run"]),
        outlier_z=float(p["outlier_z"]),
    )
    flagged = flags[["flat", "clipped", "far"]].any(axis=1)
    far = flags["far"].to_numpy()
    far_records = pd.Series(records[far]).value_counts()
    far_cum = far_records.cumsum().to_numpy() / max(int(far_records.sum()), 1)
    far_top_n = int(np.searchsorted(far_cum, 0.5 - 1e-12) + 1) if len(far_records) else 0  # holding half
    far_n = far & (labels == 0)
    far_symbols = beats["symbol"][far_n].value_counts()
    flag_table = markdown_table(
        ["class", "beats", "flat", "clipped", "far from class mean", "any", "share flagged"],
        [
            [
                c,
                int((labels == i).sum()),
                int(flags["flat"][labels == i].sum()),
                int(flags["clipped"][labels == i].sum()),
                int(flags["far"][labels == i].sum()),
                int(flagged[labels == i].sum()),
                pct(float(flagged[labels == i].mean()), 2),
            ]
            for i, c in enumerate(CLASS_NAMES)
            if (labels == i).any()
        ],
    )
    log.info("suspicious beats done (%.1f s)", time.perf_counter() - started)

    # structure
    structure = eda.covariance_structure(samples)
    lag_corr = eda.lag_correlation(structure["corr"])
    pca_index = eda.stratified_sample(labels, int(p["pca_per_class"]), seed)
    scores = (samples[pca_index] - structure["mean"]) @ structure["components"][:2].T
    all_scores = (samples - structure["mean"]) @ structure["components"][:2].T
    pc_auc = {}
    for i, c in enumerate(CLASS_NAMES[1:], start=1):
        pair = ((labels == i) | (labels == 0)) & keep
        aucs = eda.auc_columns(all_scores[pair], labels[pair] == i)
        if np.isfinite(aucs).all():
            pc_auc[c] = float(aucs[np.argmax(np.abs(aucs - 0.5))])
    lag12 = int(round(0.1 * BEAT_FS))
    pca_summary = {
        "two": float(structure["explained"][:2].sum()),
        "n95": eda.components_for(structure["explained"], 0.95),
        "n99": eda.components_for(structure["explained"], 0.99),
        "lag1": float(lag_corr[1]),
        "lag12": float(lag_corr[lag12]),
        "pc_auc": pc_auc,
    }

    # patients
    variability, per_beat = eda.patient_variability(samples, records, labels, int(p["min_record_beats"]))
    # the balanced accuracy averages the classes every evaluated set holds enough of
    nn_classes = [
        c
        for i, c in enumerate(CLASS_NAMES)
        if all(
            (sets[f"{pr} {ts}"]["label"] == i).sum() >= int(p["min_record_beats"])
            for pr, _, ts in NEIGHBOUR_PAIRS.values()
        )
    ]
    neighbours = {}
    for name, (protocol, train_set, test_set) in NEIGHBOUR_PAIRS.items():
        train, test = sets[f"{protocol} {train_set}"], sets[f"{protocol} {test_set}"]
        neighbours[name] = eda.neighbour_check(
            train[SAMPLE_COLUMNS].to_numpy(dtype=np.float32),
            train["label"].to_numpy(dtype=np.int64),
            train["record"].to_numpy(dtype=object),
            test[SAMPLE_COLUMNS].to_numpy(dtype=np.float32),
            test["label"].to_numpy(dtype=np.int64),
            test["record"].to_numpy(dtype=object),
            per_class=int(p["neighbour_per_class"]),
            seed=seed,
            classes=nn_classes,
        )
    log.info("structure and patients done (%.1f s)", time.perf_counter() - started)

    # figures and plot data, written together: the directory is replaced only when all succeed
    with atomic_dir(args.plots) as tmp:
        save(eda.class_distribution_figure(summaries), tmp / "class_distribution.png")
        save(eda.record_composition_figure(composition, groups), tmp / "record_composition.png")
        save(eda.class_mean_figure(profiles, summaries["all beats"]["counts"]), tmp / "class_mean_beat.png")
        save(
            eda.examples_figure(samples, lengths, labels, records, int(p["examples_per_class"]), seed),
            tmp / "example_beats.png",
        )
        save(eda.rhythm_figure(length_hist, ratio_hist, float(p["premature_ratio"])), tmp / "length_rr.png")
        save(eda.position_figure(stats, padding), tmp / "position_stats.png")
        save(eda.suspicious_figure(samples, lengths, labels, flags, profiles, seed), tmp / "suspicious_beats.png")
        save(eda.pca_figure(scores, labels[pca_index], structure), tmp / "pca.png")
        save(eda.correlation_figure(structure["corr"], lag_corr), tmp / "correlation.png")
        save(eda.variability_figure(per_beat, variability), tmp / "patient_variability.png")
        write_csv(
            pd.DataFrame(
                {
                    "class": CLASS_NAMES,
                    "beats": [summaries["all beats"]["counts"][c] for c in CLASS_NAMES],
                    "share": [summaries["all beats"]["shares"][c] for c in CLASS_NAMES],
                }
            ),
            tmp / "class_distribution.csv",
        )
        mean_beat = pd.DataFrame({"time_ms": eda.TIME_MS})
        for c, (mean, sd) in profiles.items():
            mean_beat[c], mean_beat[f"{c}_sd"] = mean, sd
        write_csv(mean_beat, tmp / "class_mean_beat.csv")
        write_csv(stats.drop(columns="position"), tmp / "position_stats.csv")
        write_csv(padding.drop(columns="position"), tmp / "padding_by_position.csv")
        write_csv(length_hist, tmp / "length_distribution.csv")
        write_csv(ratio_hist, tmp / "rr_ratio_distribution.csv")

    # the report
    all_counts = summaries["all beats"]["counts"]
    s_top = concentration.loc["S"]
    summary = {
        "plan": plan,
        "max_ratio": max_ratio,
        "min_beats": min_beats,
        "records": len(composition),
        "neighbour_classes": nn_classes,
        "train_counts": train_counts,
        "train_concentration": train_concentration,
        "missing": {
            "sample_nan": int(np.isnan(samples).sum()),
            "padding": float(pad_share.mean()),
            "padding_min_class": min(pad_by_class.items(), key=lambda kv: kv[1]),
            "padding_max_class": max(pad_by_class.items(), key=lambda kv: kv[1]),
            "cut": int((lengths > BEAT_SAMPLES).sum()),
            "cut_share": float((lengths > BEAT_SAMPLES).mean()),
            "rr_prev_nan": int(beats["rr_prev"].isna().sum()),
        },
        "rhythm_auc": rhythm_auc,
        "sample_auc": sample_auc,
        "length_corr": length_corr,
        "pca": pca_summary,
        "flags": {
            "flat": int(flags["flat"].sum()),
            "clipped": int(flags["clipped"].sum()),
            "far": int(far.sum()),
            "any_share": float(flagged.mean()),
            "far_top_n": far_top_n,
            "far_top_records": ", ".join(far_records.index[:far_top_n]) if far_top_n else "none",
            "far_top_share": float(far_records.iloc[:far_top_n].sum() / far.sum()) if far.any() else None,
            "far_n_nonN_symbol": float(far_symbols.drop("N", errors="ignore").sum() / far_n.sum())
            if far_n.any()
            else None,
        },
        "variability": variability,
        "overlap": overlap,
        "neighbours": neighbours,
        "shift": {
            "train": summaries["interpatient train"]["shares"],
            "holdout": summaries["interpatient holdout"]["shares"],
            "s_top_record": s_top["top_record"],
            "s_top_share": s_top["top_share"],
            "s_top_group": groups.get(s_top["top_record"], "–"),
        },
    }
    numbered = eda.conclusions(summary)

    values: dict[str, Any] = {
        "beats": len(beats),
        "records": len(composition),
        "leads": ", ".join(f"{lead} {n:,} beats" for lead, n in beats["lead"].value_counts().items()),
        "beat_fs": f"{BEAT_FS:g}",
        "ms_per_sample": f"{1000 / BEAT_FS:.2f}",
        "window_ms": f"{cut_ms:.0f}",
        "class_legend": "; ".join(f"**{c}** {CLASS_DESCRIPTIONS[c]}" for c in CLASS_NAMES),
        "class_table": markdown_table(
            ["set", "beats", "records", *CLASS_NAMES, "largest : smallest", "N : S", "N : F", "absent"],
            [
                [
                    n,
                    s["beats"],
                    s["records"],
                    *[count_share(s, c) for c in CLASS_NAMES],
                    ratio(s["imbalance_ratio"]),
                    ratio(s["counts"]["N"], s["counts"]["S"]),
                    ratio(s["counts"]["N"], s["counts"]["F"]),
                    ", ".join(s["absent"]) or "none",
                ]
                for n, s in summaries.items()
            ],
        ),
        "imbalance_all": f"{summaries['all beats']['imbalance_ratio']:.0f}",
        "smallest_class": min((c for c in CLASS_NAMES if all_counts[c]), key=lambda c: all_counts[c]),
        "n_to_s": f"{all_counts['N'] / max(all_counts['S'], 1):.0f}",
        "n_to_f": f"{all_counts['N'] / max(all_counts['F'], 1):.0f}",
        "imbalance_ktest": ratio(summaries["kaggle test"]["imbalance_ratio"]),
        "ns_itrain": ratio(train_counts["N"], train_counts["S"]),
        "ns_iholdout": ratio(
            summaries["interpatient holdout"]["counts"]["N"], summaries["interpatient holdout"]["counts"]["S"]
        ),
        "nf_itrain": ratio(train_counts["N"], train_counts["F"]),
        "nf_iholdout": ratio(
            summaries["interpatient holdout"]["counts"]["N"], summaries["interpatient holdout"]["counts"]["F"]
        ),
        "q_itrain": train_counts["Q"],
        "q_iholdout": summaries["interpatient holdout"]["counts"]["Q"],
        "plan_table": markdown_table(
            [
                "class",
                "kaggle train beats",
                "factor (kaggle)",
                "interpatient train beats",
                "factor (interpatient)",
                "interpatient train records holding it",
                "largest holder",
            ],
            [
                [
                    c,
                    summaries["kaggle train"]["counts"][c],
                    factor(kaggle_plan[c]),
                    train_counts[c],
                    factor(plan[c]),
                    train_concentration.loc[c, "records"],
                    f"{train_concentration.loc[c, 'top_record']} ({pct(train_concentration.loc[c, 'top_share'], 0)})"
                    if train_counts[c]
                    else None,
                ]
                for c in CLASS_NAMES
            ],
        ),
        "augment_max_ratio": f"{max_ratio:g}",
        "augment_min_beats": fmt(min_beats),
        "concentration_share": pct(float(p["concentration_share"]), 0),
        "concentration_table": markdown_table(
            [
                "class",
                "beats",
                "records holding it",
                f"records holding {pct(float(p['concentration_share']), 0)}",
                "largest holder",
                "its share",
            ],
            [
                [c, r["beats"], r["records"], r["records_for_share"], r["top_record"], pct(r["top_share"], 1)]
                for c, r in concentration.iterrows()
            ],
        ),
        "s_records_for_share": concentration.loc["S", "records_for_share"],
        "s_top_record": s_top["top_record"],
        "s_top_share": pct(s_top["top_share"], 0),
        "s_top_group": groups.get(s_top["top_record"], "–"),
        "f_records_for_share": concentration.loc["F", "records_for_share"],
        "f_top_record": concentration.loc["F", "top_record"],
        "f_top_share": pct(concentration.loc["F", "top_share"], 0),
        "q_top_records": ", ".join(composition["Q"].sort_values(ascending=False).index[:4]),
        "q_paced_share": pct(
            float(composition.loc[composition.index.isin(PACED), "Q"].sum() / max(all_counts["Q"], 1))
        ),
        "kaggle_same_record": pct(overlap["same_record"]),
        "kaggle_same_record_class": pct(overlap["same_record_and_class"]),
        "holdout_same_record": pct(holdout_overlap["same_record"]),
        "rhythm_table": markdown_table(
            [
                "class",
                "beats",
                "median length (ms)",
                "cut at 187 samples",
                "median rr_prev (s)",
                "median rr_next (s)",
                "median rr_prev / rr_local",
                "median rr_next / rr_local",
                f"premature (< {p['premature_ratio']})",
            ],
            [
                [
                    c,
                    int(r["beats"]),
                    f"{r['length_ms']:.0f}",
                    pct(r["cut"], 2),
                    r["rr_prev"],
                    r["rr_next"],
                    r["prev_local"],
                    r["next_local"],
                    pct(r["premature"]),
                ]
                for c, r in rhythm_table.iterrows()
            ],
        ),
        "premature_ratio": f"{float(p['premature_ratio']):g}",
        "rhythm_auc_table": markdown_table(
            ["feature", *[f"{c} vs N" for c in rhythm_auc.columns]],
            [[f"`{feat}`", *[rhythm_auc.loc[feat, c] for c in rhythm_auc.columns]] for feat in rhythm_auc.index],
        ),
        "auc_reference": fmt(int(min(n_reference, int(p["auc_max_reference"])))),
        "length_rr_next": f"{length_corr['rr_next']:.3f}",
        "length_rr_prev": f"{length_corr['rr_prev']:.3f}",
        "length_rr_local": f"{length_corr['rr_local']:.3f}",
        "s_prev_local": fmt(rhythm_table.loc["S", "prev_local"]) if "S" in rhythm_table.index else "–",
        "n_prev_local": fmt(rhythm_table.loc["N", "prev_local"]) if "N" in rhythm_table.index else "–",
        "v_next_local": fmt(rhythm_table.loc["V", "next_local"]) if "V" in rhythm_table.index else "–",
        "s_premature": pct(rhythm_table.loc["S", "premature"]) if "S" in rhythm_table.index else "–",
        "n_premature": pct(rhythm_table.loc["N", "premature"]) if "N" in rhythm_table.index else "–",
        "v_premature": pct(rhythm_table.loc["V", "premature"]) if "V" in rhythm_table.index else "–",
        "sample_auc_table": markdown_table(
            ["class vs N", "best sample position (ms)", "its AUC", "rhythm feature separating best", "its AUC"],
            [
                [
                    c,
                    f"{(sample_auc[c] - 0.5).abs().idxmax():.0f}",
                    sample_auc[c].loc[(sample_auc[c] - 0.5).abs().idxmax()],
                    f"`{(rhythm_auc[c] - 0.5).abs().idxmax()}`",
                    rhythm_auc[c].loc[(rhythm_auc[c] - 0.5).abs().idxmax()],
                ]
                for c in sample_auc.columns
            ],
        ),
        "padding_all": pct(float(pad_share.mean())),
        "sample_nan": fmt(summary["missing"]["sample_nan"]),
        "padding_table": markdown_table(
            ["class", *pad_by_class],
            [["mean share of the 187 samples that is padding", *map(pct, pad_by_class.values())]],
        ),
        "skew_max_ms": f"{stats.loc[stats['skewness'].idxmax(), 'time_ms']:.0f}",
        "skew_max": f"{stats['skewness'].max():.2f}",
        "std_max_ms": f"{stats.loc[stats['std'].idxmax(), 'time_ms']:.0f}",
        "std_max": f"{stats['std'].max():.3f}",
        "pad_at_skew": pct(float((lengths <= int(stats["skewness"].idxmax())).mean())),
        "flat_std": f"{float(p['flat_std']):g}",
        "clip_run": int(p["clip_run"]),
        "clip_ms": f"{int(p['clip_run']) * 1000 / BEAT_FS:.0f}",
        "outlier_z": f"{float(p['outlier_z']):g}",
        "flag_table": flag_table,
        "min_std": f"{flags['std'].min():.3f}",
        "n_flat": int(flags["flat"].sum()),
        "n_clipped": int(flags["clipped"].sum()),
        "n_far": int(far.sum()),
        "far_top_n": far_top_n,
        "far_top_records": summary["flags"]["far_top_records"],
        "far_top_share": pct(summary["flags"]["far_top_share"], 0),
        "far_n_symbols": ", ".join(f"{sym} {n:,}" for sym, n in far_symbols.items()) or "none",
        "n_symbols": ", ".join(f"{sym} {n:,}" for sym, n in beats["symbol"][labels == 0].value_counts().items()),
        "far_leads": ", ".join(f"{lead} {n:,}" for lead, n in beats["lead"][far].value_counts().items()) or "none",
        "pc_auc": ", ".join(f"{c} vs N {max(a, 1 - a):.3f}" for c, a in pc_auc.items()),
        "nn_classes": ", ".join(nn_classes),
        "pca_two": pct(pca_summary["two"]),
        "pca_n95": pca_summary["n95"],
        "pca_n99": pca_summary["n99"],
        "pca_per_class": int(p["pca_per_class"]),
        "lag1": f"{pca_summary['lag1']:.3f}",
        "lag12": f"{pca_summary['lag12']:.3f}",
        "min_record_beats": int(p["min_record_beats"]),
        "variability_table": markdown_table(
            [
                "class",
                "records (≥ min beats)",
                "beats",
                "median distance to own record's mean",
                "median mean distance to other records' means",
                "ratio",
                "median distance to nearest other record",
                "nearest mean is own record",
                "chance",
                "variance between records",
            ],
            [
                [
                    c,
                    int(r["records"]),
                    int(r["beats"]),
                    r["own"],
                    r["other"],
                    f"{r['ratio']:.2f}×",
                    r["nearest_other"],
                    pct(r["nearest_is_own"]),
                    pct(r["chance"]),
                    pct(r["between_share"]),
                ]
                for c, r in variability.iterrows()
            ],
        )
        if not variability.empty
        else "Too few records hold enough beats of any class to compare.",
        "neighbour_per_class": int(p["neighbour_per_class"]),
        "neighbour_table": markdown_table(
            [
                "training set → evaluated set",
                "queries",
                "nearest training beat from the same patient",
                *[f"{c} recall" for c in CLASS_NAMES],
                "balanced accuracy",
            ],
            [
                [
                    f"{NEIGHBOUR_PAIRS[n][0]} {NEIGHBOUR_PAIRS[n][1]} → {NEIGHBOUR_PAIRS[n][2]}",
                    r["queries"],
                    pct(r["same_record"]),
                    *[r["recall"].get(c) for c in CLASS_NAMES],
                    r["balanced_accuracy"],
                ]
                for n, r in neighbours.items()
            ],
        ),
        "nn_kaggle_bacc": fmt(neighbours["kaggle test"]["balanced_accuracy"]),
        "nn_holdout_bacc": fmt(neighbours["interpatient holdout"]["balanced_accuracy"]),
        "nn_itest_bacc": fmt(neighbours["interpatient test"]["balanced_accuracy"]),
        "nn_kaggle_same": pct(neighbours["kaggle test"]["same_record"]),
        "conclusions": "\n".join(f"{k}. {text}" for k, text in enumerate(numbered, start=1)),
        "seed": seed,
    }
    with atomic_path(args.report) as tmp_report:
        tmp_report.write_text(render(args.template.read_text(), values))

    metrics = {
        "beats": len(beats),
        "records": len(composition),
        "classes": {
            n: {k: s[k] for k in ("beats", "records", "counts", "imbalance_ratio")} for n, s in summaries.items()
        },
        "augmentation": {
            "max_ratio": float(p["augment_max_ratio"]),
            "interpatient_train": plan,
            "kaggle_train": kaggle_plan,
        },
        "concentration": {
            c: {k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for c, r in concentration.iterrows()
        },
        "kaggle_test_overlap": overlap,
        "holdout_overlap": holdout_overlap,
        "padding_share": {"all": float(pad_share.mean()), **pad_by_class},
        "cut_beats": summary["missing"]["cut"],
        "rr_prev_missing": summary["missing"]["rr_prev_nan"],
        "rhythm_auc_vs_N": {c: {f: float(v) for f, v in rhythm_auc[c].items()} for c in rhythm_auc.columns},
        "length_correlation": length_corr,
        "suspicious": {k: summary["flags"][k] for k in ("flat", "clipped", "far", "any_share")},
        "pca": pca_summary,
        "patient_variability": {
            c: {k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for c, r in variability.iterrows()
        },
        "nearest_neighbour": neighbours,
    }
    write_json(metrics, args.metrics)
    log.info("eda written in %.1f s: %s, %s, %s", time.perf_counter() - started, args.report, args.plots, args.metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
