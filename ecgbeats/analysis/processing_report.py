"""The processing report (``reports/processing.md``): its values and figures from the processing
measurements the product stages and the studies wrote (``metrics/processing/*.json``).

:func:`report` takes those documents, already loaded, and returns the template's values and the
figures; the ``report_processing`` study reads the files and writes the report. A missing document
raises KeyError naming it instead of leaving a placeholder.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ecgbeats.analysis.plots import subplots
from ecgbeats.analysis.reporting import fmt, markdown_table
from ecgbeats.data.aami import CLASS_NAMES
from ecgbeats.data.beats import BEAT_FS
from ecgbeats.data.dataset import SAMPLE_COLUMNS
from ecgbeats.data.splits import PROTOCOLS
from ecgbeats.features.groups import DOWNSAMPLE_FACTOR, protocol_groups
from ecgbeats.processing.augment import TRANSFORMS, AugmentConfig, apply_transform

# why a feature can tell the classes apart: physiology, for the importance table
MEANINGS: dict[str, str] = {
    "rr_prev": "prematurity: S and V beats come early, after a short RR interval",
    "rr_prev_ratio": "prematurity relative to the patient's own rhythm (S and V come early)",
    "rr_prev_minus_local": "prematurity relative to the patient's own rhythm (S and V come early)",
    "rr_local": "the patient's heart rate (the average RR around the beat)",
    "rr_next": "the pause after the beat: a full compensatory pause follows most V beats",
    "rr_next_ratio": "the pause after the beat relative to the rhythm (compensatory pause after V)",
    "rr_next_minus_local": "the pause after the beat relative to the rhythm (compensatory pause after V)",
    "rr_next_minus_prev": "short-then-long RR: the premature beat and its pause",
    "rr_prev_next_ratio": "short-then-long RR: the premature beat and its pause",
    "rr_prev_next_ratio_local": "short-then-long RR: the premature beat and its pause",
    "rr_pause_ratio": "compensatory pause: V beats reset nothing, so prev + next RR is two normal RRs",
    "length": "window length, which follows the next RR interval (the pause after the beat)",
    "length_ms": "window length, which follows the next RR interval (the pause after the beat)",
    "r_halfwidth_ms": "QRS width: ventricular beats spread slowly through the muscle, so their QRS is wide",
    "qrs_end_ms": "QRS width: ventricular beats spread slowly through the muscle, so their QRS is wide",
    "qrs_area": "QRS size and width: wide, large ventricular complexes",
    "qrs_energy_ratio": "how much of the beat's energy is in the QRS (narrow sharp QRS vs wide V complexes)",
    "max_abs_slope": "the steepest slope: sharp normal QRS vs slurred ventricular QRS",
    "r_downslope": "the R down-stroke slope: sharp normal QRS vs slurred ventricular QRS",
    "qrs_max_upslope": "QRS slope: sharp normal QRS vs slurred ventricular QRS",
    "line_length": "signal complexity per sample: sharp narrow beats vs smooth wide ones",
    "s_depth": "S-wave depth: bundle-branch and ventricular morphology",
    "s_time_ms": "S-wave timing: a late S means a wide QRS",
    "t_max": "T-wave region: ventricular beats repolarise abnormally (discordant T)",
    "t_min": "T-wave region: ventricular beats repolarise abnormally (discordant T)",
    "t_mean": "T-wave region: ventricular beats repolarise abnormally (discordant T)",
    "t_std": "T-wave region: ventricular beats repolarise abnormally (discordant T)",
    "t_peak_ms": "T-wave timing: repolarisation follows the QRS width and the rate",
    "t_polarity": "T-wave polarity: discordant (inverted) T after ventricular beats",
    "energy": "overall beat energy after scaling: wide complexes raise it",
    "baseline": "the median level after min-max scaling: where the flat segments sit",
    "r_amp": "R amplitude above the baseline after scaling",
    "unpadded_mean": "mean scaled level: wide complexes and large T waves raise it",
    "unpadded_std": "spread of the scaled beat: flat or noisy beats (Q) vs peaked ones",
    "tail_max": "the end of the window: the next beat's R arrives early after a short next RR",
}
TSFRESH_MEANINGS: dict[str, str] = {
    "fft_coefficient": "spectral content: a narrow QRS carries high frequencies, a wide V complex low ones",
    "fft_aggregated": "spectral centroid and spread: sharp vs smooth beats",
    "spkt_welch_density": "power spectral density: sharp vs smooth beats",
    "autocorrelation": "self-similarity at a lag: slow waves (wide QRS, T) vs sharp spikes",
    "agg_autocorrelation": "self-similarity over lags: slow waves (wide QRS, T) vs sharp spikes",
    "absolute_sum_of_changes": "line length: how much the signal moves (sharpness, noise)",
    "cid_ce": "complexity (line length): sharp narrow beats vs smooth wide ones",
    "mean_abs_change": "mean absolute slope: sharp narrow beats vs smooth wide ones",
    "mean_second_derivative_central": "curvature: sharp peaks vs smooth waves",
    "time_reversal_asymmetry_statistic": "asymmetry in time: steep rise and slow fall of the waves",
    "ratio_beyond_r_sigma": "share of samples far from the mean: a narrow spike vs a broad complex",
}


def meaning(column: str) -> str:
    """Why a model column can separate the classes, in physiological terms."""
    if column in MEANINGS:
        return MEANINGS[column]
    for prefix, kind in (("ds", "40 Hz mean of samples around"), ("ms", "scaled sample (padding as missing) at"),
                         ("s", "scaled sample at")):  # fmt: skip
        digits = column[len(prefix) :]
        if column.startswith(prefix) and digits.isdigit():
            ms = int(digits) * (DOWNSAMPLE_FACTOR if prefix == "ds" else 1) * 1000 / BEAT_FS
            part = "inside the QRS" if ms < 100 else "the T wave" if ms < 450 else "late: the next P wave or R"
            return f"{kind} {ms:.0f} ms after R: {part}"
    if column.startswith("ts_"):
        for name, text in TSFRESH_MEANINGS.items():
            if name in column:
                return f"tsfresh {name}: {text}"
        return "tsfresh feature of the unpadded beat"
    return ""


def importance_table(booster: lgb.Booster, top: int = 12) -> str:
    """The model's most useful inputs: LightGBM gain share, with the physiology behind each."""
    gain = pd.Series(booster.feature_importance("gain"), index=booster.feature_name())
    share = (gain / gain.sum()).sort_values(ascending=False).head(top)
    rows = [[name, round(100 * float(v), 1), meaning(name)] for name, v in share.items()]
    return markdown_table(["feature", "gain share (%)", "why it separates the classes"], rows, digits=1)


def f1_row(name: str, entry: dict[str, Any], baseline: float | None = None) -> list[Any]:
    row = [name, entry["features"], entry["macro_f1"]]
    row.append(None if baseline is None else round(entry["macro_f1"] - baseline, 4))
    row += [entry["f1"][c] for c in ("N", "S", "V", "F")]
    row += [entry.get("S_Se"), entry.get("S_+P"), entry.get("V_Se"), entry.get("V_+P")]
    return row


F1_HEADERS = [
    "variant",
    "features",
    "macro-F1",
    "Δ vs first",
    "F1 N",
    "F1 S",
    "F1 V",
    "F1 F",
    "S Se",
    "S +P",
    "V Se",
    "V +P",
]


def ablation_tables(data: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    tables, best = {}, {}
    for protocol, variants in data["results"].items():
        items = list(variants.items())
        base = items[0][1]["macro_f1"]
        rows = [f1_row(name, entry, base) for name, entry in items]
        seeds = items[0][1]["seeds"]
        spread = max(e["macro_f1_sd"] for _, e in items)
        note = f"\n\n(mean of {seeds} seeds; macro-F1 SD over seeds at most {spread:.3f})"
        tables[protocol] = markdown_table(F1_HEADERS, rows, digits=3) + (note if seeds > 1 and spread > 0 else "")
        name, entry = max(items, key=lambda kv: kv[1]["macro_f1"])
        best[protocol] = {"name": name, "macro_f1": entry["macro_f1"], "baseline": base, "groups": entry.get("groups")}
    return tables, best


# (padding as zeros, padding as NaN) variant pairs of the feature ablation, the same model otherwise
PADDING_PAIRS = {
    "samples, length, rr": ("baseline (samples, length, rr)", "padding as NaN (samples_masked, length, rr)"),
    "+ rr_norm + morphology": ("+ rr_norm + morphology", "padding as NaN, + rr_norm + morphology"),
}
NOISE_MACRO_F1 = 0.02  # differences below this on the validation sets are read as noise (the report's preamble)


def padding_values(results: dict[str, Any]) -> dict[str, str]:
    """The zeros-or-NaN table of the padding question and the decision it supports."""
    rows, deltas = [], []
    for protocol in PROTOCOLS:
        for label, (zeros, nans) in PADDING_PAIRS.items():
            if zeros in results.get(protocol, {}) and nans in results[protocol]:
                delta = results[protocol][nans]["macro_f1"] - results[protocol][zeros]["macro_f1"]
                deltas.append(delta)
                rows.append([protocol, label, results[protocol][zeros]["macro_f1"],
                             results[protocol][nans]["macro_f1"], round(delta, 4)])  # fmt: skip
    headers = ["protocol", "groups", "padding as 0 (samples)", "padding as NaN (samples_masked)", "Δ"]
    gain, loss = max(deltas, default=0.0), min(deltas, default=0.0)
    if not deltas:
        decision = "not measured in this run"
    elif gain < NOISE_MACRO_F1:
        worse = f", and with other groups it is worse by up to {-loss:.3f}" if loss < 0 else ""
        decision = (
            f"the padding stays zeros: as NaN it is better by at most {max(gain, 0.0):.3f} macro-F1, inside the "
            f"{NOISE_MACRO_F1} noise of the validation sets{worse}; zeros are also what the published rows and every "
            "client send, and the domain groups and tsfresh see the unpadded part plus the length either way"
        )
    else:
        decision = (
            f"the padding as NaN is better by up to {gain:.3f} macro-F1, beyond the {NOISE_MACRO_F1} noise of the "
            "validation sets: use `samples_masked` in `train.features` where the table shows the gain"
        )
    return {"padding_rows": markdown_table(headers, rows), "padding_decision": decision}


def bar_figure(data: dict[str, dict[str, dict[str, Any]]], title: str) -> Figure:
    fig, axes = subplots(1, len(data), figsize=(6.5 * len(data), 0.45 * max(len(v) for v in data.values()) + 1.5))
    axes = np.atleast_1d(axes)
    for ax, (protocol, variants) in zip(axes, data.items(), strict=True):
        names = list(variants)
        values = [variants[n]["macro_f1"] for n in names]
        ax.barh(range(len(names)), values, color="tab:blue")
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(min(values) - 0.05, min(1.0, max(values) + 0.03))
        ax.set_xlabel("validation macro-F1")
        ax.set_title(protocol)
        for i, v in enumerate(values):
            ax.text(v, i, f" {v:.3f}", va="center", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def augment_figure(beats: pd.DataFrame, config: AugmentConfig) -> Figure:
    """Synthetic beats of every transform beside the real S beat they came from."""
    rng = np.random.default_rng(config.seed)
    fig, axes = subplots(2, 3, figsize=(13, 6), sharey=True)
    picks = {c: np.flatnonzero(beats["label"].to_numpy() == CLASS_NAMES.index(c)) for c in ("S", "F")}
    source = beats.iloc[int(rng.choice(picks["S"]))]
    n = min(int(source["length"]), 187)
    x = source[SAMPLE_COLUMNS].to_numpy(dtype=np.float64)[:n]
    for ax, name in zip(axes.ravel(), TRANSFORMS, strict=True):
        ax.plot(np.arange(n) / BEAT_FS * 1000, x, color="black", lw=1.2, label="real S beat")
        for k in range(3):
            y, *_ = apply_transform(
                name, x, np.random.default_rng(k), config.severity, **config.transforms.get(name, {})
            )
            y = (y - y.min()) / (np.ptp(y) or 1.0)
            ax.plot(np.arange(len(y)) / BEAT_FS * 1000, y, lw=0.8, alpha=0.8, label=f"synthetic {k + 1}")
        ax.set_title(f"{name} {config.transforms.get(name, {})}", fontsize=8)
        ax.set_xlabel("ms after R")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def impute_figure(studies: dict[str, dict[str, Any]]) -> Figure:
    fig, axes = subplots(2, len(studies), figsize=(6 * len(studies), 7), squeeze=False)
    for col, (protocol, study) in enumerate(studies.items()):
        table = pd.DataFrame(study["levels"])
        for method, part in table.groupby("method", sort=False):
            axes[0, col].plot(part["gap_length"] / BEAT_FS * 1000, part["macro_f1"], marker="o", label=method)
            if part["rmse"].notna().any():
                axes[1, col].plot(part["gap_length"] / BEAT_FS * 1000, part["rmse"], marker="o", label=method)
        axes[0, col].set_title(f"{protocol}: validation macro-F1 with gaps")
        axes[1, col].set_title(f"{protocol}: reconstruction RMSE on lost samples")
        axes[1, col].set_xlabel("mean gap length (ms)")
        axes[0, col].legend(fontsize=8)
    fig.tight_layout()
    return fig


def report(
    metrics: Mapping[str, Any],
    split: Mapping[str, Any],
    augment_train: pd.DataFrame,
    boosters: Mapping[str, lgb.Booster],
    params: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, Figure]]:
    """The template's values and the figures (file name -> figure) of the processing report.

    ``metrics``: the processing documents by name (``features_ablation``, ``imbalance_<protocol>``,
    ``augment_<protocol>``, ``features_<protocol>``, ``tsfresh_ablation``, ``impute_gaps_<protocol>``);
    ``split``: the interpatient split metrics; ``augment_train``: training beats for the augmentation
    figure; ``boosters``: the protocols' models; ``params``: the whole params mapping.
    """
    figures: dict[str, Figure] = {}
    values: dict[str, Any] = {}
    val_classes = split["sets"]["val"]["classes"]
    values["val_f_beats"], values["val_s_beats"] = val_classes["F"], val_classes["S"]
    values["ablation_seeds"] = ", ".join(str(s) for s in params["ablation"]["seeds"])

    # domain features
    ablation = metrics["features_ablation"]
    tables, best = ablation_tables(ablation)
    for p in PROTOCOLS:
        values[f"ablation_{p}"] = tables[p]
        values[f"best_features_{p}"] = best[p]["name"]
        values[f"best_features_{p}_f1"] = fmt(best[p]["macro_f1"])
        values[f"baseline_features_{p}_f1"] = fmt(best[p]["baseline"])
        current = [
            e
            for e in ablation["results"][p].values()
            if e.get("groups") == protocol_groups(params["train"]["features"], p)
        ]
        values[f"current_features_{p}_f1"] = fmt(current[0]["macro_f1"]) if current else "not measured"
    figures["feature_ablation.png"] = bar_figure({p: ablation["results"][p] for p in PROTOCOLS},
                                                 "Feature groups (validation)")  # fmt: skip
    values.update(padding_values(ablation["results"]))

    # imbalance
    imbalance: dict[str, dict[str, Any]] = {"results": {}}
    for p in PROTOCOLS:
        imbalance["results"].update(metrics[f"imbalance_{p}"]["results"])
    for p in PROTOCOLS:
        variants = imbalance["results"][p]["variants"]
        items = list(variants.items())
        values[f"imbalance_{p}"] = markdown_table(F1_HEADERS, [f1_row(n, e, items[0][1]["macro_f1"]) for n, e in items])
        name, entry = max(items, key=lambda kv: kv[1]["macro_f1"])
        values[f"imbalance_best_{p}"] = name
        values[f"imbalance_best_{p}_f1"] = fmt(entry["macro_f1"])
        values[f"imbalance_groups_{p}"] = ", ".join(imbalance["results"][p]["groups"])
    figures["imbalance.png"] = bar_figure({p: imbalance["results"][p]["variants"] for p in PROTOCOLS},
                                          "Class imbalance (validation)")  # fmt: skip
    for p in PROTOCOLS:  # what the augment stage added (metrics/processing/augment_<p>.json)
        aug = metrics[f"augment_{p}"]
        added = ", ".join(f"{c} +{n:,}" for c, n in aug["added"].items() if n)
        values[f"augment_added_{p}"] = added or "nothing (`augment.enabled: false`: the comparison below decides)"
        values[f"augment_after_{p}"] = ", ".join(f"{c} {n:,}" for c, n in aug["after"].items())
    config = AugmentConfig.from_params(params["augment"])
    figures["augment_examples.png"] = augment_figure(augment_train, config)
    values["augment_params"] = (
        "`"
        + json.dumps(
            {
                k: params["augment"][k]
                for k in ("target_ratio", "min_beats", "max_factor", "classes", "per_beat", "severity")
            }
        )
        + "`"
    )

    # tsfresh (what the extraction costs is a benchmark: make bench-tsfresh, reports/deployment.md)
    for p in PROTOCOLS:
        f = metrics[f"features_{p}"]
        values[f"ts_{p}_candidates"] = f["candidate_features"]
        values[f"ts_{p}_relevant"] = f["relevant_features"]
        values[f"ts_{p}_selected"] = f["selected_features"]
        values[f"ts_{p}_calculators"] = ", ".join(f["selected_calculators"])
    ts_ablation = metrics["tsfresh_ablation"]
    t_tables, _ = ablation_tables(ts_ablation)
    for p in PROTOCOLS:
        values[f"tsfresh_ablation_{p}"] = t_tables[p]
        variants = ts_ablation["results"][p]
        plain = [*variants.values(), *ablation["results"][p].values()]  # every measured set without tsfresh
        without = max((e["macro_f1"] for e in plain if "tsfresh" not in e["groups"]), default=None)
        with_ts = max((e["macro_f1"] for e in variants.values() if "tsfresh" in e["groups"]), default=None)
        values[f"tsfresh_gain_{p}"] = fmt(with_ts - without, 3) if with_ts is not None and without is not None else "–"
    values["ts_in_model"] = (
        ", ".join(p for p in PROTOCOLS if "tsfresh" in protocol_groups(params["train"]["features"], p))
        or "neither protocol"
    )

    # imputation
    studies = {p: metrics[f"impute_gaps_{p}"] for p in PROTOCOLS}
    for p, study in studies.items():
        table = pd.DataFrame(study["levels"])
        values[f"impute_{p}"] = markdown_table(
            ["mean gap (ms)", "lost share", "method", "RMSE", "MAE", "macro-F1"]
            + [f"F1 {c}" for c in "NSVF"],
            [[round(r.gap_length / BEAT_FS * 1000, 1), r.lost_share, r.method, r.rmse, r.mae,
              r.macro_f1, r.f1_N, r.f1_S, r.f1_V, r.f1_F] for r in table.itertuples()],
        )  # fmt: skip
        rec = study["recommendation"]
        values[f"impute_best_{p}"] = rec["method"]
        values[f"impute_scores_{p}"] = ", ".join(f"{k} {v:.3f}" for k, v in rec["mean_gapped_macro_f1"].items())
        values[f"impute_rmse_{p}"] = ", ".join(
            f"{k} {v:.4f}" for k, v in rec["mean_gapped_rmse"].items() if v is not None
        )
    values["impute_gap_model"] = "`" + json.dumps(next(iter(studies.values()))["gap_model"]) + "`"
    figures["impute_gaps.png"] = impute_figure(studies)

    # the defaults the measurements support (interpatient validation decides: it is the deployment case)
    candidates = {**ablation["results"]["interpatient"], **ts_ablation["results"].get("interpatient", {})}
    name, entry = max(candidates.items(), key=lambda kv: kv[1]["macro_f1"])
    values["default_features"] = f"`{json.dumps(entry['groups'])}` ({name}, {entry['macro_f1']:.3f})"
    inter = imbalance["results"]["interpatient"]["variants"]
    name, entry = max(inter.items(), key=lambda kv: kv[1]["macro_f1"])
    flag = str(name.startswith("augmentation")).lower()
    weights = entry["class_weight"]
    values["default_imbalance"] = (
        f"{name} ({entry['macro_f1']:.3f}): `augment.enabled: {flag}`, `train.class_weight: {weights}`"
    )
    values["default_impute"] = ", ".join(f"{p} {s['recommendation']['method']}" for p, s in studies.items())

    for p in PROTOCOLS:
        values[f"committed_features_{p}"] = "`" + json.dumps(protocol_groups(params["train"]["features"], p)) + "`"
    values["committed_class_weight"] = params["train"]["class_weight"]
    values["committed_augment"] = str(bool(params["augment"].get("enabled", True))).lower()
    values["committed_impute"] = params["impute"]["method"]
    for p in PROTOCOLS:
        values[f"importance_{p}"] = importance_table(boosters[p])
        values[f"model_groups_{p}"] = ", ".join(protocol_groups(params["train"]["features"], p))

    return values, figures
