"""What the ``eda`` stage writes, made from an ``ecgbeats.analysis.eda.EdaResult``: the figures and plot data
(``FIGURES``, ``PLOT_DATA``: file name -> function of the result), the values that fill the report
template (``report_values``), its numbered conclusions, and the metrics.

Pure functions: the stage saves what they return.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ecgbeats.analysis import eda
from ecgbeats.analysis.eda import NEIGHBOUR_PAIRS, EdaResult
from ecgbeats.analysis.reporting import fmt, markdown_table
from ecgbeats.data.aami import CLASS_DESCRIPTIONS, CLASS_NAMES, PACED
from ecgbeats.data.beats import BEAT_FS


def _class_distribution(r: EdaResult) -> pd.DataFrame:
    overall = r.summaries["all beats"]
    return pd.DataFrame(
        {
            "class": CLASS_NAMES,
            "beats": [overall["counts"][c] for c in CLASS_NAMES],
            "share": [overall["shares"][c] for c in CLASS_NAMES],
        }
    )


def _mean_beat(r: EdaResult) -> pd.DataFrame:
    frame = pd.DataFrame({"time_ms": eda.TIME_MS})
    for c, (mean, sd) in r.profiles.items():
        frame[c], frame[f"{c}_sd"] = mean, sd
    return frame


FIGURES: dict[str, Callable[[EdaResult], Figure]] = {
    "class_distribution.png": lambda r: eda.class_distribution_figure(r.summaries),
    "record_composition.png": lambda r: eda.record_composition_figure(r.composition, r.groups),
    "class_mean_beat.png": lambda r: eda.class_mean_figure(r.profiles, r.summaries["all beats"]["counts"]),
    "example_beats.png": lambda r: eda.examples_figure(
        r.samples, r.lengths, r.labels, r.records, r.settings.examples_per_class, r.settings.seed
    ),
    "length_rr.png": lambda r: eda.rhythm_figure(r.length_hist, r.ratio_hist, r.settings.premature_ratio),
    "position_stats.png": lambda r: eda.position_figure(r.stats, r.padding),
    "suspicious_beats.png": lambda r: eda.suspicious_figure(
        r.samples, r.lengths, r.labels, r.flags, r.profiles, r.settings.seed
    ),
    "pca.png": lambda r: eda.pca_figure(r.pca_scores, r.labels[r.pca_index], r.structure),
    "correlation.png": lambda r: eda.correlation_figure(r.structure["corr"], r.lag_corr),
    "patient_variability.png": lambda r: eda.variability_figure(r.per_beat, r.variability),
}
PLOT_DATA: dict[str, Callable[[EdaResult], pd.DataFrame]] = {
    "class_distribution.csv": _class_distribution,
    "class_mean_beat.csv": _mean_beat,
    "position_stats.csv": lambda r: r.stats.drop(columns="position"),
    "padding_by_position.csv": lambda r: r.padding.drop(columns="position"),
    "length_distribution.csv": lambda r: r.length_hist,
    "rr_ratio_distribution.csv": lambda r: r.ratio_hist,
}


# ---------------------------------------------------------------- formatting


def pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{100 * value:.{digits}f} %"


def _count_share(summary: dict[str, Any], name: str) -> str:
    return f"{summary['counts'][name]:,} ({pct(summary['shares'][name], 2)})"


def _factor(value: float | None) -> str:
    return "too few to multiply" if value is None else f"×{value:.1f}"


def _ratio(a: float | None, b: float = 1) -> str | None:
    return None if a is None or not b else f"{a / b:.0f} : 1"


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    """``reporting.markdown_table`` in which NaN (an empty class, a missing value) shows as a dash."""
    clean = [[None if isinstance(cell, float) and not np.isfinite(cell) else cell for cell in row] for row in rows]
    return markdown_table(headers, clean)


def _join(items: Sequence[str]) -> str:
    items = list(items)
    if not items:
        return "none"
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _separation(auc: float, name: str) -> str:
    """An AUC as a separation either way, with the direction: "0.932, lower in S"."""
    return f"{max(auc, 1 - auc):.3f}, {'lower' if auc < 0.5 else 'higher'} in {name}"


def _best(aucs: pd.Series) -> Any:
    """The index of the AUC farthest from 0.5."""
    return (aucs - 0.5).abs().idxmax()


# ---------------------------------------------------------------- conclusions


def conclusions(r: EdaResult) -> list[str]:
    """The numbered conclusions later stages use."""
    out = []
    plan, conc = r.plan, r.train_concentration
    counts = r.summaries["interpatient train"]["counts"]
    max_ratio, min_beats = r.settings.augment_max_ratio, r.settings.augment_min_beats
    needy = [c for c, f in plan.items() if f is not None and f > 1]
    too_few = [c for c, f in plan.items() if f is None]
    parts = [
        f"{c} ×{plan[c]:.1f} ({counts[c]:,} beats from {conc.loc[c, 'records']} records, "
        f"{pct(conc.loc[c, 'top_share'], 0)} of them in record {conc.loc[c, 'top_record']})"
        for c in needy
    ]
    text = (
        f"**Augmentation.** In the inter-patient training set the largest class outnumbers {_join(needy)} more "
        f"than {max_ratio:g} to 1; reaching {max_ratio:g} : 1 needs {_join(parts)}."
        if needy
        else f"**Augmentation.** No class of the inter-patient training set is outnumbered more than "
        f"{max_ratio:g} to 1."
    )
    if too_few:
        text += (
            f" {_join([f'{c} ({counts[c]:,} beats)' for c in too_few])} "
            f"{'has' if len(too_few) == 1 else 'have'} fewer than {min_beats:,} training beats: too few "
            "to multiply; leave such a class out of the inter-patient model or merge it, and say so in its metrics."
        )
    text += (
        " Synthetic copies (time warping within the RR window, amplitude scaling, baseline wander, noise) "
        "multiply the shapes of the few patients who hold a class: combine modest augmentation with class "
        "weights and judge it on unseen patients only."
    )
    out.append(text)

    m = r.missing
    out.append(
        f"**Missing data.** {m['sample_nan']:,} sample values are NaN; missingness here is structural: "
        f"{pct(m['padding'])} of all "
        f"sample values are zero padding (per class on average from {pct(m['padding_min_class'][1])} for "
        f"{m['padding_min_class'][0]} to {pct(m['padding_max_class'][1])} for {m['padding_max_class'][0]}), "
        "so zeros after the beat's end are not signal; "
        f"{m['cut']:,} beats ({pct(m['cut_share'], 2)}) are longer than 187 samples and lose their end; "
        f"`rr_prev` is missing for {m['rr_prev_nan']:,} beats (each record's first) and all RR values are "
        "missing with the Kaggle CSV source, so models must accept NaN RR features (LightGBM does) "
        "rather than impute them from the padding."
    )

    ra, sa = r.rhythm_auc, r.sample_auc
    lines: list[str] = []
    rhythm_first: list[str] = []
    shape_first: list[str] = []
    for c in ra.columns:
        best, position = _best(ra[c]), _best(sa[c])
        lines.append(
            f"{c}: `{best}` (AUC {_separation(ra.loc[best, c], c)}) against the best single sample, at "
            f"{position:.0f} ms (AUC {_separation(sa.loc[position, c], c)})"
        )
        (rhythm_first if abs(ra.loc[best, c] - 0.5) > abs(sa.loc[position, c] - 0.5) else shape_first).append(c)
    lc = r.length_corr
    out.append(
        "**Features likely to matter.** The best single rhythm value against N: "
        + "; ".join(lines)
        + f". A rhythm value beats every single sample for {_join(rhythm_first)}; the shape wins for "
        f"{_join(shape_first)}. The unpadded length follows the *next* RR interval (r = {lc['rr_next']:.3f}), "
        f"not the previous one (r = {lc['rr_prev']:.3f}): the window starts at the R peak, so neither the P "
        "wave nor the prematurity of the beat is in the 187 samples. Give models `rr_prev`, `rr_local` and "
        "their ratio explicitly."
    )

    p = r.pca_summary
    out.append(
        f"**Redundancy.** Neighbouring positions correlate at r = {p['lag1']:.3f} (one sample, 8.3 ms, apart) "
        f"and {p['lag12']:.3f} at 100 ms; {p['n95']} principal components hold 95 % of the variance and the "
        f"first two {pct(p['two'])}."
        + (
            " Pooling or dropping positions (every second sample, PCA or wavelet summaries) should cost little."
            if p["lag1"] > 0.9
            else ""
        )
        + " The better of the first two components separates each class from N "
        "with AUC "
        + ", ".join(f"{c} {max(a, 1 - a):.3f}" for c, a in p["pc_auc"].items())
        + (
            ": none reaches 0.9, so a linear 2-D view is not enough and the classifier must combine many values."
            if all(max(a, 1 - a) < 0.9 for a in p["pc_auc"].values())
            else "."
        )
    )

    f, n_records = r.suspicious, len(r.composition)
    few = 0 < f["far_top_n"] <= max(2, 0.1 * n_records)
    out.append(
        f"**Outliers.** {f['flat']:,} flat, {f['clipped']:,} clipped and {f['far']:,} far-from-mean beats "
        f"({pct(f['any_share'], 2)} of all). Half of the far beats come from {f['far_top_n']} of "
        f"{n_records} records ({f['far_top_records']})"
        + (
            ": concentrated in a few patients, they are more likely patient-specific morphologies than "
            "recording errors. Keep them in training; flag them in monitoring instead of dropping them."
            if few
            else ": spread over many patients, they deserve a look before training; flag rather than drop them."
        )
    )

    v, o, nn = r.variability, r.overlap, r.neighbours
    if not v.empty:
        vtext = "; ".join(
            f"{c}: {v.loc[c, 'ratio']:.2f}× farther, nearest to its own record's mean for "
            f"{pct(v.loc[c, 'nearest_is_own'], 0)} of beats (chance {pct(v.loc[c, 'chance'], 0)})"
            for c in v.index
        )
    else:
        vtext = "too few records per class to measure"
    k, h = nn.get("kaggle test", {}), nn.get("interpatient holdout", {})
    closer = not v.empty and bool((v["ratio"] > 1).all())
    k_bacc, h_bacc = k.get("balanced_accuracy"), h.get("balanced_accuracy")
    gap = k_bacc is not None and h_bacc is not None and k_bacc - h_bacc > 0.05
    out.append(
        "**Why `kaggle` overstates real-world performance.** "
        + (
            "Beats lie closer to their own patient's class mean than to other patients' "
            if closer
            else "Own-patient and other-patient class means compare as follows "
        )
        + f"({vtext}). The random split puts {pct(o['same_record'])} of "
        f"test beats next to training beats of the same patient ({pct(o['same_record_and_class'])} of the "
        "same patient and class), and the nearest training beat of a kaggle test beat is from the same "
        f"patient {pct(k.get('same_record'))} of the time. A plain 1-nearest-neighbour on the raw samples "
        f"reaches a balanced accuracy over {_join(r.nn_classes)} of {fmt(k_bacc)} on the kaggle test "
        f"set and {fmt(h_bacc)} on the DS2 holdout"
        + (": the difference is patients seen in training, not skill." if gap else ".")
        + " Report the inter-patient holdout as the headline and select models "
        "on whole held-out records."
    )

    train, holdout = r.summaries["interpatient train"]["shares"], r.summaries["interpatient holdout"]["shares"]
    s_top = r.concentration.loc["S"]
    out.append(
        "**Label shift between DS1 and DS2.** Class shares of the inter-patient training set against the "
        "holdout: "
        + ", ".join(f"{c} {pct(train[c], 2)} vs {pct(holdout[c], 2)}" for c in CLASS_NAMES[1:])
        + f"; record {s_top['top_record']} ({r.groups.get(s_top['top_record'], '–')}) alone holds "
        f"{pct(s_top['top_share'], 0)} of all S beats. Per-class precision on the holdout moves with these "
        "priors; the holdout-shift report should compare against them."
    )
    return out


# ---------------------------------------------------------------- report values


def _class_values(r: EdaResult) -> dict[str, Any]:
    """Section 1: class distribution, imbalance and augmentation."""
    summaries, p = r.summaries, r.settings
    all_counts, train_counts = summaries["all beats"]["counts"], summaries["interpatient train"]["counts"]
    holdout_counts = summaries["interpatient holdout"]["counts"]
    conc, tconc, composition = r.concentration, r.train_concentration, r.composition
    s_top = conc.loc["S"]
    share = pct(p.concentration_share, 0)
    return {
        "class_table": _table(
            ["set", "beats", "records", *CLASS_NAMES, "largest : smallest", "N : S", "N : F", "absent"],
            [
                [
                    n,
                    s["beats"],
                    s["records"],
                    *[_count_share(s, c) for c in CLASS_NAMES],
                    _ratio(s["imbalance_ratio"]),
                    _ratio(s["counts"]["N"], s["counts"]["S"]),
                    _ratio(s["counts"]["N"], s["counts"]["F"]),
                    ", ".join(s["absent"]) or "none",
                ]
                for n, s in summaries.items()
            ],
        ),
        "imbalance_all": f"{summaries['all beats']['imbalance_ratio']:.0f}",
        "smallest_class": min((c for c in CLASS_NAMES if all_counts[c]), key=lambda c: all_counts[c]),
        "n_to_s": f"{all_counts['N'] / max(all_counts['S'], 1):.0f}",
        "n_to_f": f"{all_counts['N'] / max(all_counts['F'], 1):.0f}",
        "imbalance_ktest": _ratio(summaries["kaggle test"]["imbalance_ratio"]),
        "ns_itrain": _ratio(train_counts["N"], train_counts["S"]),
        "ns_iholdout": _ratio(holdout_counts["N"], holdout_counts["S"]),
        "nf_itrain": _ratio(train_counts["N"], train_counts["F"]),
        "nf_iholdout": _ratio(holdout_counts["N"], holdout_counts["F"]),
        "q_itrain": train_counts["Q"],
        "q_iholdout": holdout_counts["Q"],
        "plan_table": _table(
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
                    _factor(r.kaggle_plan[c]),
                    train_counts[c],
                    _factor(r.plan[c]),
                    tconc.loc[c, "records"],
                    f"{tconc.loc[c, 'top_record']} ({pct(tconc.loc[c, 'top_share'], 0)})" if train_counts[c] else None,
                ]
                for c in CLASS_NAMES
            ],
        ),
        "augment_max_ratio": f"{p.augment_max_ratio:g}",
        "augment_min_beats": fmt(p.augment_min_beats),
        "concentration_share": share,
        "concentration_table": _table(
            ["class", "beats", "records holding it", f"records holding {share}", "largest holder", "its share"],
            [
                [c, row["beats"], row["records"], row["records_for_share"], row["top_record"], pct(row["top_share"], 1)]
                for c, row in conc.iterrows()
            ],
        ),
        "s_records_for_share": conc.loc["S", "records_for_share"],
        "s_top_record": s_top["top_record"],
        "s_top_share": pct(s_top["top_share"], 0),
        "s_top_group": r.groups.get(s_top["top_record"], "–"),
        "f_records_for_share": conc.loc["F", "records_for_share"],
        "f_top_record": conc.loc["F", "top_record"],
        "f_top_share": pct(conc.loc["F", "top_share"], 0),
        "q_top_records": ", ".join(composition["Q"].sort_values(ascending=False).index[:4]),
        "q_paced_share": pct(
            float(composition.loc[composition.index.isin(PACED), "Q"].sum() / max(all_counts["Q"], 1))
        ),
        "kaggle_same_record": pct(r.overlap["same_record"]),
        "kaggle_same_record_class": pct(r.overlap["same_record_and_class"]),
        "holdout_same_record": pct(r.holdout_overlap["same_record"]),
    }


def _rhythm_values(r: EdaResult) -> dict[str, Any]:
    """Rhythm, length, single-value separability and padding."""
    rt, ra, sa, lc, p = r.rhythm_table, r.rhythm_auc, r.sample_auc, r.length_corr, r.settings

    def cell(c: str, column: str, show: Callable[[Any], str]) -> str:
        return show(rt.loc[c, column]) if c in rt.index else "–"

    return {
        "rhythm_table": _table(
            [
                "class",
                "beats",
                "median length (ms)",
                "cut at 187 samples",
                "median rr_prev (s)",
                "median rr_next (s)",
                "median rr_prev / rr_local",
                "median rr_next / rr_local",
                f"premature (< {p.premature_ratio})",
            ],
            [
                [
                    c,
                    int(row["beats"]),
                    f"{row['length_ms']:.0f}",
                    pct(row["cut"], 2),
                    row["rr_prev"],
                    row["rr_next"],
                    row["prev_local"],
                    row["next_local"],
                    pct(row["premature"]),
                ]
                for c, row in rt.iterrows()
            ],
        ),
        "premature_ratio": f"{p.premature_ratio:g}",
        "rhythm_auc_table": _table(
            ["feature", *[f"{c} vs N" for c in ra.columns]],
            [[f"`{feat}`", *[ra.loc[feat, c] for c in ra.columns]] for feat in ra.index],
        ),
        "auc_reference": fmt(r.auc_reference),
        "length_rr_next": f"{lc['rr_next']:.3f}",
        "length_rr_prev": f"{lc['rr_prev']:.3f}",
        "length_rr_local": f"{lc['rr_local']:.3f}",
        "s_prev_local": cell("S", "prev_local", fmt),
        "n_prev_local": cell("N", "prev_local", fmt),
        "v_next_local": cell("V", "next_local", fmt),
        "s_premature": cell("S", "premature", pct),
        "n_premature": cell("N", "premature", pct),
        "v_premature": cell("V", "premature", pct),
        "sample_auc_table": _table(
            ["class vs N", "best sample position (ms)", "its AUC", "rhythm feature separating best", "its AUC"],
            [
                [
                    c,
                    f"{_best(sa[c]):.0f}",
                    sa[c].loc[_best(sa[c])],
                    f"`{_best(ra[c])}`",
                    ra[c].loc[_best(ra[c])],
                ]
                for c in sa.columns
            ],
        ),
        "padding_all": pct(float(r.pad_share.mean())),
        "sample_nan": fmt(r.missing["sample_nan"]),
        "padding_table": _table(
            ["class", *r.pad_by_class],
            [["mean share of the 187 samples that is padding", *map(pct, r.pad_by_class.values())]],
        ),
    }


def _sample_values(r: EdaResult) -> dict[str, Any]:
    """Per-position statistics, suspicious beats and the covariance structure."""
    stats, flags, labels, f, p = r.stats, r.flags, r.labels, r.suspicious, r.settings
    present = [(i, c) for i, c in enumerate(CLASS_NAMES) if (labels == i).any()]
    return {
        "skew_max_ms": f"{stats.loc[stats['skewness'].idxmax(), 'time_ms']:.0f}",
        "skew_max": f"{stats['skewness'].max():.2f}",
        "std_max_ms": f"{stats.loc[stats['std'].idxmax(), 'time_ms']:.0f}",
        "std_max": f"{stats['std'].max():.3f}",
        "pad_at_skew": pct(float((r.lengths <= int(stats["skewness"].idxmax())).mean())),
        "flat_std": f"{p.flat_std:g}",
        "clip_run": p.clip_run,
        "clip_ms": f"{p.clip_run * 1000 / BEAT_FS:.0f}",
        "outlier_z": f"{p.outlier_z:g}",
        "flag_table": _table(
            ["class", "beats", "flat", "clipped", "far from class mean", "any", "share flagged"],
            [
                [
                    c,
                    int((labels == i).sum()),
                    int(flags["flat"][labels == i].sum()),
                    int(flags["clipped"][labels == i].sum()),
                    int(flags["far"][labels == i].sum()),
                    int(r.flagged[labels == i].sum()),
                    pct(float(r.flagged[labels == i].mean()), 2),
                ]
                for i, c in present
            ],
        ),
        "min_std": f"{flags['std'].min():.3f}",
        "n_flat": f["flat"],
        "n_clipped": f["clipped"],
        "n_far": f["far"],
        "far_top_n": f["far_top_n"],
        "far_top_records": f["far_top_records"],
        "far_top_share": pct(f["far_top_share"], 0),
        "far_n_symbols": ", ".join(f"{sym} {n:,}" for sym, n in r.far_symbols.items()) or "none",
        "n_symbols": ", ".join(f"{sym} {n:,}" for sym, n in r.n_symbols.items()),
        "far_leads": ", ".join(f"{lead} {n:,}" for lead, n in r.far_leads.items()) or "none",
        "pc_auc": ", ".join(f"{c} vs N {max(a, 1 - a):.3f}" for c, a in r.pca_summary["pc_auc"].items()),
        "pca_two": pct(r.pca_summary["two"]),
        "pca_n95": r.pca_summary["n95"],
        "pca_n99": r.pca_summary["n99"],
        "pca_per_class": p.pca_per_class,
        "lag1": f"{r.pca_summary['lag1']:.3f}",
        "lag12": f"{r.pca_summary['lag12']:.3f}",
    }


def _patient_values(r: EdaResult) -> dict[str, Any]:
    """Within- versus between-patient spread and the nearest-neighbour check."""
    nn = r.neighbours
    return {
        "nn_classes": ", ".join(r.nn_classes),
        "min_record_beats": r.settings.min_record_beats,
        "variability_table": _table(
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
                    int(row["records"]),
                    int(row["beats"]),
                    row["own"],
                    row["other"],
                    f"{row['ratio']:.2f}×",
                    row["nearest_other"],
                    pct(row["nearest_is_own"]),
                    pct(row["chance"]),
                    pct(row["between_share"]),
                ]
                for c, row in r.variability.iterrows()
            ],
        )
        if not r.variability.empty
        else "Too few records hold enough beats of any class to compare.",
        "neighbour_per_class": r.settings.neighbour_per_class,
        "neighbour_table": _table(
            [
                "training set → evaluated set",
                "queries",
                "nearest training beat from the same patient",
                *[f"{c} recall" for c in CLASS_NAMES],
                "balanced accuracy",
            ],
            [
                [
                    "{} {} → {}".format(*NEIGHBOUR_PAIRS[n]),
                    row["queries"],
                    pct(row["same_record"]),
                    *[row["recall"].get(c) for c in CLASS_NAMES],
                    row["balanced_accuracy"],
                ]
                for n, row in nn.items()
            ],
        ),
        "nn_kaggle_bacc": fmt(nn["kaggle test"]["balanced_accuracy"]),
        "nn_holdout_bacc": fmt(nn["interpatient holdout"]["balanced_accuracy"]),
        "nn_itest_bacc": fmt(nn["interpatient test"]["balanced_accuracy"]),
        "nn_kaggle_same": pct(nn["kaggle test"]["same_record"]),
    }


def report_values(r: EdaResult) -> dict[str, Any]:
    """Every value the report template names (``reporting.render`` formats what is not a string)."""
    return {
        "beats": len(r.labels),
        "records": len(r.composition),
        "leads": ", ".join(f"{lead} {n:,} beats" for lead, n in r.leads.items()),
        "beat_fs": f"{BEAT_FS:g}",
        "ms_per_sample": f"{1000 / BEAT_FS:.2f}",
        "window_ms": f"{eda.WINDOW_MS:.0f}",
        "class_legend": "; ".join(f"**{c}** {CLASS_DESCRIPTIONS[c]}" for c in CLASS_NAMES),
        **_class_values(r),
        **_rhythm_values(r),
        **_sample_values(r),
        **_patient_values(r),
        "conclusions": "\n".join(f"{k}. {text}" for k, text in enumerate(conclusions(r), start=1)),
        "seed": r.settings.seed,
    }


# ---------------------------------------------------------------- metrics


def _plain(row: pd.Series) -> dict[str, Any]:
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}


def metrics(r: EdaResult) -> dict[str, Any]:
    """The key numbers, JSON-ready."""
    return {
        "beats": len(r.labels),
        "records": len(r.composition),
        "classes": {
            n: {k: s[k] for k in ("beats", "records", "counts", "imbalance_ratio")} for n, s in r.summaries.items()
        },
        "augmentation": {
            "max_ratio": r.settings.augment_max_ratio,
            "interpatient_train": r.plan,
            "kaggle_train": r.kaggle_plan,
        },
        "concentration": {c: _plain(row) for c, row in r.concentration.iterrows()},
        "kaggle_test_overlap": r.overlap,
        "holdout_overlap": r.holdout_overlap,
        "padding_share": {"all": float(r.pad_share.mean()), **r.pad_by_class},
        "cut_beats": r.missing["cut"],
        "rr_prev_missing": r.missing["rr_prev_nan"],
        "rhythm_auc_vs_N": {c: {f: float(v) for f, v in r.rhythm_auc[c].items()} for c in r.rhythm_auc.columns},
        "length_correlation": r.length_corr,
        "suspicious": {k: r.suspicious[k] for k in ("flat", "clipped", "far", "any_share")},
        "pca": r.pca_summary,
        "patient_variability": {c: _plain(row) for c, row in r.variability.iterrows()},
        "nearest_neighbour": r.neighbours,
    }
