"""The ``shift`` stage's analysis of the interpatient model under data shift, and what the stage writes.

:func:`analyse` measures patient shift (in-patient test vs the DS2 holdout, same model), synthetic
shifts at several severities on both sets, label shift on the holdout, drift statistics against the
in-patient test set and likely causes; it returns the metrics (JSON-ready). :func:`plot_data`,
``FIGURES`` and :func:`report_values` turn those metrics into the plot CSVs, the figures and the values
of the report template.

:func:`mitigations` is the study beside it (``studies/dvc.yaml``): variants retrained and measured on
the holdout, with :func:`mitigation_plot_data`, ``MITIGATION_FIGURES`` and :func:`mitigation_report_values`.

Settings arrive as plain values (:class:`ShiftSettings`, :class:`MitigationSettings`); nothing here
reads params or writes files: the stages save what these functions return.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.stats import ks_2samp, spearmanr

from ecgbeats.analysis import shift
from ecgbeats.analysis.plots import COLORS, subplots
from ecgbeats.analysis.reporting import fmt, markdown_table, q_note
from ecgbeats.data import sampling
from ecgbeats.data.aami import CLASS_NAMES
from ecgbeats.data.dataset import SAMPLE_COLUMNS
from ecgbeats.features.groups import build_features
from ecgbeats.modelling.bundle import ModelBundle
from ecgbeats.modelling.evaluation import evaluate_predictions
from ecgbeats.modelling.model import predict_proba
from ecgbeats.modelling.variants import fit_variant
from ecgbeats.operations.drift import build_profile, psi_noise_floor
from ecgbeats.processing.augment import AugmentConfig, augment_training
from ecgbeats.processing.impute import KnnBeatImputer

log = logging.getLogger(__name__)

SETS = ("train", "val", "test", "holdout")
SHIFTED = ("test", "holdout")  # the sets the model is scored on under shift
# the synthetic-shift curves and rankings: a subsample holds a single Q beat, which would be a fifth of macro-F1
SHIFT_SCORE = "macro_f1_nsvf"


@dataclass(frozen=True)
class ShiftSettings:
    """Sizes, seeds, shifts and scenarios of the analysis (the ``shift`` params)."""

    seed: int
    bootstrap: int  # resamples of every bootstrap interval
    subsample: dict[str, int]  # beats of the test and holdout subsamples the synthetic shifts run on
    kinds: dict[str, dict[str, Any]]  # shift kind -> {"severities": [...], **the kind's options}
    label_scenarios: dict[str, dict[str, float]]  # scenario -> class-share multipliers
    label_resample_beats: int  # beats drawn per label-shift scenario
    premature_ratio: float  # rr_prev / rr_local below this: premature
    min_template_beats: int  # a record's N template needs this many N beats
    report_records: int  # rows of the per-record table in the report

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any], dropout_method: str = "linear", beat_end: str = "next_beat"
    ) -> ShiftSettings:
        """The settings from a params mapping; the dropout shift fills lost samples with ``dropout_method``
        unless its kind names a ``method``, and the sampling shift cuts beats as ingest did (``beat_end``)
        unless it names one (the mapping is not modified)."""
        kinds = {kind: dict(spec) for kind, spec in params["kinds"].items()}
        if "dropout" in kinds:
            kinds["dropout"].setdefault("method", dropout_method)
        if "sampling" in kinds:
            kinds["sampling"].setdefault("beat_end", beat_end)
        label_shift = params["label_shift"]
        return cls(
            seed=int(params["seed"]),
            bootstrap=int(params["bootstrap"]),
            subsample={name: int(params["subsample"][name]) for name in SHIFTED},
            kinds=kinds,
            label_scenarios=dict(label_shift["scenarios"]),
            label_resample_beats=int(label_shift["resample_beats"]),
            premature_ratio=float(params["premature_ratio"]),
            min_template_beats=int(params["min_template_beats"]),
            report_records=int(params["report_records"]),
        )

    @property
    def dropout_method(self) -> str:
        return self.kinds.get("dropout", {}).get("method", "linear")


@dataclass(frozen=True)
class MitigationSettings:
    """The retrained variants of the mitigation study (``shift.mitigations`` and the keys beside it)."""

    seed: int
    bootstrap: int  # resamples of the paired record bootstrap
    num_threads: int  # LightGBM threads of the variants
    variants: dict[str, dict[str, Any]]  # variant -> overrides of the train params
    baseline: str  # the variant every other one is compared with
    previous: str | None = None  # a variant with fewer of the default groups, to show what they gain

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> MitigationSettings:
        variants = {name: dict(variant or {}) for name, variant in params["mitigations"].items()}
        return cls(
            seed=int(params["seed"]),
            bootstrap=int(params["bootstrap"]),
            num_threads=int(params["num_threads"]),
            variants=variants,
            baseline=str(params.get("mitigation_baseline", next(iter(variants)))),
            previous=params.get("mitigation_previous"),
        )


# ---------------------------------------------------------------- measurements


def dropout_imputer(
    settings: ShiftSettings, train: pd.DataFrame, *, k: int, reference_beats: int
) -> KnnBeatImputer | None:
    """The kNN imputer fitted on the training beats when the dropout shift fills gaps with ``knn``, else None."""
    if settings.dropout_method != "knn":
        return None
    imputer = KnnBeatImputer(k=k, reference_beats=reference_beats, seed=settings.seed)
    return imputer.fit(train[SAMPLE_COLUMNS].to_numpy(), train["length"].to_numpy())


def synthetic_shifts(
    subsets: Mapping[str, pd.DataFrame],
    bundle: ModelBundle,
    profile: Mapping[str, Any],
    kinds: Mapping[str, Mapping[str, Any]],
    *,
    seed: int,
    knn: KnnBeatImputer | None = None,
    raw_dir: Path | None = None,
) -> dict[str, Any]:
    """Scores and drift of the model on every shift kind and severity, for each subsample."""
    out: dict[str, Any] = {}
    for k, (kind, spec) in enumerate(kinds.items()):
        options = {key: value for key, value in spec.items() if key != "severities"}
        rows = []
        for severity in spec["severities"]:
            row: dict[str, Any] = {"severity": severity, "level": shift.level(kind, severity, options)}
            for j, (name, beats) in enumerate(subsets.items()):
                shifted = shift.shift_beats(
                    beats, kind, severity, seed=seed + 100 * k + j, options=options, knn=knn, raw_dir=raw_dir
                )
                predicted = bundle.predict_proba(shifted).argmax(axis=1)
                row[name] = shift.set_scores(beats["label"].to_numpy(), predicted)
                row[name]["drift"] = shift.drift_summary(profile, shifted, predicted)
            rows.append(row)
            log.info(
                "%s severity %s (%s): macro-F1 (N, S, V, F) test %.3f, holdout %.3f",
                kind,
                severity,
                row["level"],
                row["test"][SHIFT_SCORE],
                row["holdout"][SHIFT_SCORE],
            )
        out[kind] = rows
    return out


def _share(mask: np.ndarray) -> float | None:
    return round(float(np.mean(mask)), 4) if len(mask) else None


def rr_ratio(beats: pd.DataFrame) -> np.ndarray:
    """``rr_prev / rr_local`` of every beat (in the table's dtype, then float64): below 1 is premature."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (beats["rr_prev"] / beats["rr_local"]).to_numpy(dtype=np.float64)


def causes(
    sets: Mapping[str, pd.DataFrame],
    predicted: Mapping[str, np.ndarray],
    *,
    premature_ratio: float,
    min_template_beats: int,
) -> dict[str, Any]:
    """Evidence for the likely causes of the patient-shift cost: morphology, rhythm (S), window length."""
    holdout = sets["holdout"]
    reference = shift.class_templates(sets["train"], 0, min_template_beats)
    distance = {
        name: shift.template_distance(shift.class_templates(sets[name], 0, min_template_beats), reference)
        for name in SHIFTED
    }
    y, pred = holdout["label"].to_numpy(), predicted["holdout"]
    records = holdout["record"].astype(str).to_numpy()
    per_record = []
    for record in sorted(set(records)):
        mask = records == record
        s = shift.set_scores(y[mask], pred[mask])
        per_record.append(
            {
                "record": record,
                "beats": int(mask.sum()),
                "accuracy": s["accuracy"],
                "S": int((y[mask] == 1).sum()),
                "V": int((y[mask] == 2).sum()),
                "S_missed": int(((y[mask] == 1) & (pred[mask] != 1)).sum()),
                "N_as_S": int(((y[mask] == 0) & (pred[mask] == 1)).sum()),
                "template_distance": round(float(distance["holdout"].get(record, np.nan)), 4),
            }
        )
    table = pd.DataFrame(per_record)
    known = table.dropna(subset=["template_distance"])
    rho = spearmanr(known["template_distance"], 1 - known["accuracy"]).statistic if len(known) > 2 else np.nan

    rhythm: dict[str, Any] = {}
    for name in ("train", "test", "holdout"):
        labels = sets[name]["label"].to_numpy()
        is_s, is_n, early = labels == 1, labels == 0, rr_ratio(sets[name]) < premature_ratio
        rhythm[name] = {"S_premature_share": _share(early[is_s]), "N_premature_share": _share(early[is_n])}
        if name in predicted:
            hit = predicted[name] == 1
            rhythm[name]["S_se_premature"] = _share(hit[is_s & early])
            rhythm[name]["S_se_not_premature"] = _share(hit[is_s & ~early])
            rhythm[name]["N_as_S_premature"] = _share(hit[is_n & early])
            rhythm[name]["N_as_S_not_premature"] = _share(hit[is_n & ~early])
    lengths = {name: sets[name]["length"].to_numpy() for name in ("train", "test", "holdout")}
    edges = np.quantile(lengths["train"], [0.25, 0.5, 0.75])
    bins = np.searchsorted(edges, lengths["holdout"], side="right")
    correct = pred == y
    length = {
        "median": {name: float(np.median(v)) for name, v in lengths.items()},
        "ks_train_holdout": round(float(ks_2samp(lengths["train"], lengths["holdout"]).statistic), 4),
        "ks_train_test": round(float(ks_2samp(lengths["train"], lengths["test"]).statistic), 4),
        "unpadded_share": {name: round(float(shift.unpadded_fraction(sets[name]).mean()), 4) for name in SETS},
        "train_quartile_edges": [float(e) for e in edges],
        "holdout_share_by_train_quartile": [_share(bins == b) for b in range(4)],
        "holdout_accuracy_by_train_quartile": [_share(correct[bins == b]) for b in range(4)],
    }
    return {
        "morphology": {
            "median_template_distance": {name: round(float(distance[name].median()), 4) for name in SHIFTED},
            "spearman_distance_vs_error": None if not np.isfinite(rho) else round(float(rho), 4),
            "records": table.sort_values("S_missed", ascending=False).to_dict(orient="records"),
        },
        "rhythm": rhythm,
        "length": length,
    }


def mitigations(
    sets: Mapping[str, pd.DataFrame],
    variants: Mapping[str, Mapping[str, Any]],
    *,
    train_params: Mapping[str, Any],
    feature_groups: Sequence[str],
    baseline: str,
    num_threads: int,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """Each variant retrained (``train_params`` with the variant's overrides) and scored on val, test and
    holdout, with a record-level paired bootstrap of its holdout macro-F1 against ``baseline``.

    Besides train params, a variant may name ``features`` (groups, default ``feature_groups``),
    ``augment`` (augmentation settings for the training set) or ``record_relative`` (``window``).
    """
    results: dict[str, Any] = {}
    predictions: dict[str, np.ndarray] = {}
    holdout = sets["holdout"]
    for name, overrides in variants.items():
        variant = dict(overrides or {})
        augment = variant.pop("augment", None)
        relative = variant.pop("record_relative", None)
        groups = list(variant.pop("features", feature_groups))
        if augment and relative:
            raise ValueError(f"mitigation {name}: augment and record_relative cannot be combined")
        run_params = {**train_params, **variant, "num_threads": num_threads}
        train = sets["train"]
        if augment:
            train, _ = augment_training(train, AugmentConfig.from_params(augment))
        frames = {
            key: build_features(frame, groups)
            for key, frame in (("train", train), *((s, sets[s]) for s in ("val", "test", "holdout")))
        }
        if relative:
            window = int(relative.get("window", 100)) if isinstance(relative, dict) else 100
            frames = {
                key: pd.concat([frame, shift.record_relative(train if key == "train" else sets[key], window)], axis=1)
                for key, frame in frames.items()
            }
        started = time.perf_counter()
        booster = fit_variant(
            frames["train"], train["label"].to_numpy(), frames["val"], sets["val"]["label"].to_numpy(), run_params
        )
        scores = {}
        for key in ("val", "test", "holdout"):
            predicted = predict_proba(booster, frames[key]).argmax(axis=1)
            scores[key] = shift.set_scores(sets[key]["label"].to_numpy(), predicted)
            if key == "holdout":
                predictions[name] = predicted
        results[name] = {
            "features": groups,
            "overrides": dict(overrides or {}),
            "best_iteration": int(booster.best_iteration or booster.current_iteration()),
            "train_beats": len(train),
            **scores,
        }
        log.info(
            "mitigation %s: val %.3f, holdout macro-F1 %.3f (%.0f s)",
            name,
            scores["val"]["macro_f1"],
            scores["holdout"]["macro_f1"],
            time.perf_counter() - started,
        )
    y, records = holdout["label"].to_numpy(), holdout["record"].astype(str).to_numpy()
    for name in results:
        results[name]["holdout_vs_" + baseline] = shift.paired_bootstrap(
            y, predictions[baseline], predictions[name], records, n_boot=n_boot, seed=seed
        )
    return results


def analyse(
    sets: Mapping[str, pd.DataFrame],
    bundle: ModelBundle,
    settings: ShiftSettings,
    *,
    knn: KnnBeatImputer | None = None,
    raw_dir: Path | None = None,
) -> dict[str, Any]:
    """The whole analysis of ``bundle`` on the ``SETS`` (beat tables); the metrics the stage writes.

    ``knn`` fills the dropout shift's gaps when its method is knn (:func:`dropout_imputer`);
    ``raw_dir`` holds the raw records the sampling shift cuts the beats from again.
    """
    started = time.perf_counter()
    seed, n_boot = settings.seed, settings.bootstrap
    labels = {name: sets[name]["label"].to_numpy() for name in SETS}
    proba = {name: bundle.predict_proba(sets[name]) for name in SETS}
    predicted = {name: p.argmax(axis=1) for name, p in proba.items()}
    metrics: dict[str, Any] = {
        "sets": {name: evaluate_predictions(labels[name], proba[name], n_boot=n_boot, seed=seed) for name in SETS}
    }
    groups = {name: sets[name]["record"].astype(str).to_numpy() for name in SHIFTED}
    metrics["patient_shift"] = {
        level: shift.bootstrap_gap(
            labels["test"], predicted["test"], labels["holdout"], predicted["holdout"], n_boot=n_boot, seed=seed, **kw
        )
        for level, kw in (
            ("beat_level", {}),
            ("record_level", {"groups_a": groups["test"], "groups_b": groups["holdout"]}),
        )
    }
    metrics["patient_shift"]["q_beats"] = {
        name: int((labels[name] == CLASS_NAMES.index("Q")).sum()) for name in SHIFTED
    }
    log.info(
        "patient shift: macro-F1 %.3f -> %.3f",
        metrics["sets"]["test"]["macro_f1"],
        metrics["sets"]["holdout"]["macro_f1"],
    )

    sizes = settings.subsample
    subsets = {
        name: sets[name]
        .iloc[sampling.proportional_subsample(labels[name], sizes[name], seed + i)]
        .reset_index(drop=True)
        for i, name in enumerate(SHIFTED)
    }
    metrics["subsample"] = {name: len(frame) for name, frame in subsets.items()}
    profile = build_profile(sets["test"], predicted["test"], list(CLASS_NAMES), source="in-patient test")
    metrics["synthetic"] = synthetic_shifts(
        subsets, bundle, profile, settings.kinds, seed=seed, knn=knn, raw_dir=raw_dir
    )
    metrics["label_shift"] = shift.label_shift_table(
        labels["holdout"],
        predicted["holdout"],
        settings.label_scenarios,
        seed=seed,
        resample_n=settings.label_resample_beats,
    )
    metrics["drift"] = {
        "reference": "in-patient test",
        "noise_floor_subsample": round(psi_noise_floor(10, len(sets["test"]), min(sizes.values())), 4),
        "sets": {
            name: shift.drift_summary(profile, sets[name], predicted[name]) for name in ("train", "val", "holdout")
        },
    }
    metrics["causes"] = causes(
        sets, predicted, premature_ratio=settings.premature_ratio, min_template_beats=settings.min_template_beats
    )
    log.info("measurements done in %.0f s", time.perf_counter() - started)
    return metrics


# ---------------------------------------------------------------- plot data and figures


def plot_data(metrics: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    """CSV files for ``dvc plots``: one degradation curve per shift kind, label shift, patient shift."""
    tables = {}
    for kind, rows in metrics["synthetic"].items():
        tables[f"{kind}.csv"] = pd.DataFrame(
            [
                {
                    "severity": r["severity"],
                    "level": r["level"],
                    **{f"{s}_macro_f1": r[s]["macro_f1"] for s in SHIFTED},
                    **{f"{s}_macro_f1_nsvf": r[s]["macro_f1_nsvf"] for s in SHIFTED},
                    **{f"{s}_{c}_f1": r[s]["per_class"][c]["f1"] for s in SHIFTED for c in CLASS_NAMES},
                    "test_max_psi": r["test"]["drift"]["max_feature_psi"],
                }
                for r in rows
            ]
        )
    tables["label_shift.csv"] = pd.DataFrame(
        [
            {
                "scenario": r["scenario"],
                **{f"{c}_share": r["shares"][c] for c in CLASS_NAMES},
                **{f"{c}_precision": r["weighted"]["per_class"][c]["precision"] for c in CLASS_NAMES},
                **{f"{c}_recall": r["weighted"]["per_class"][c]["recall"] for c in CLASS_NAMES},
            }
            for r in metrics["label_shift"]
        ]
    )
    gap = metrics["patient_shift"]["record_level"]["per_class"]
    tables["patient_shift.csv"] = pd.DataFrame(
        [{"class": c, "test_f1": gap[c]["f1"]["a"], "holdout_f1": gap[c]["f1"]["b"]} for c in CLASS_NAMES]
    )
    return tables


def patient_shift_figure(patient_shift: Mapping[str, Any]) -> Figure:
    """F1, Se and +P per class on the in-patient test set and on the holdout (record-level point values)."""
    gap = patient_shift["record_level"]["per_class"]
    fig, axes = subplots(1, 3, figsize=(13, 3.8))
    x = np.arange(len(CLASS_NAMES))
    for ax, metric, label in zip(
        axes, ("f1", "recall", "precision"), ("F1", "Se (recall)", "+P (precision)"), strict=True
    ):
        for offset, side, name in ((-0.2, "a", "in-patient test"), (0.2, "b", "holdout (DS2)")):
            ax.bar(x + offset, [gap[c][metric][side] or 0 for c in CLASS_NAMES], 0.4, label=name)
        ax.set(xticks=x, xticklabels=CLASS_NAMES, ylim=(0, 1.05), title=label)
    axes[0].legend()
    fig.suptitle("Patient shift: the same model on its training patients' unseen beats and on new patients")
    fig.tight_layout()
    return fig


def degradation_figure(synthetic: Mapping[str, list[dict[str, Any]]]) -> Figure:
    """Macro-F1 and N, S, V F1 against severity, one panel per shift kind."""
    columns = (len(synthetic) + 1) // 2
    fig, axes = subplots(2, columns, figsize=(4 * columns, 7.5), squeeze=False)
    for ax, (kind, rows) in zip(axes.flat, synthetic.items(), strict=False):
        sev = [r["severity"] for r in rows]
        ax.plot(sev, [r["test"][SHIFT_SCORE] for r in rows], "k-o", label="test macro-F1 (N, S, V, F)")
        ax.plot(sev, [r["holdout"][SHIFT_SCORE] for r in rows], "k--o", label="holdout macro-F1 (N, S, V, F)")
        for c in ("N", "S", "V"):
            ax.plot(
                sev,
                [r["holdout"]["per_class"][c]["f1"] or 0 for r in rows],
                "--",
                color=COLORS[c],
                label=f"holdout {c} F1",
            )
            ax.plot(sev, [r["test"]["per_class"][c]["f1"] or 0 for r in rows], "-", color=COLORS[c], alpha=0.5)
        ax.set(title=kind, xlabel="severity", ylim=(0, 1.02), xticks=sev)
    for ax in list(axes.flat)[len(synthetic) :]:
        ax.axis("off")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Degradation under synthetic shifts (solid: in-patient test, dashed: holdout)")
    fig.tight_layout()
    return fig


def label_shift_figure(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """S and V Se and +P on the re-weighted holdout, per label-shift scenario."""
    fig, ax = subplots(figsize=(7, 3.8))
    names = [r["scenario"] for r in rows]
    for c in ("S", "V"):
        ax.plot(
            names, [r["weighted"]["per_class"][c]["precision"] for r in rows], "o-", color=COLORS[c], label=f"{c} +P"
        )
        ax.plot(names, [r["weighted"]["per_class"][c]["recall"] for r in rows], ":", color=COLORS[c], label=f"{c} Se")
    ax.set(ylabel="holdout, re-weighted", ylim=(0, 1.02), title="Label shift: +P follows prevalence, Se does not")
    ax.tick_params(axis="x", rotation=30)
    ax.legend()
    fig.tight_layout()
    return fig


def causes_figure(causes: Mapping[str, Any], sets: Mapping[str, pd.DataFrame]) -> Figure:
    """Holdout error against template distance per record; prematurity of S and N; window length per set."""
    records = pd.DataFrame(causes["morphology"]["records"]).dropna(subset=["template_distance"])
    fig, axes = subplots(1, 3, figsize=(14, 4))
    axes[0].scatter(records["template_distance"], 1 - records["accuracy"])
    for _, r in records.iterrows():
        axes[0].annotate(r["record"], (r["template_distance"], 1 - r["accuracy"]), fontsize=7)
    axes[0].set(
        xlabel="RMS distance of the record's mean N beat to the nearest training record's",
        ylabel="holdout error rate",
        title="patient morphology",
    )
    bins: np.ndarray = np.linspace(0.2, 1.6, 50)
    for name, style in (("train", "-"), ("holdout", "--")):
        frame = sets[name]
        ratio = rr_ratio(frame)
        for label, c in ((1, "S"), (0, "N")):
            axes[1].hist(
                ratio[frame["label"].to_numpy() == label],
                bins=bins,
                density=True,
                histtype="step",
                ls=style,
                color=COLORS[c],
                label=f"{c} {name}",
            )
    axes[1].set(xlabel="rr_prev / rr_local", ylabel="density", title="S depends on rhythm (prematurity)")
    axes[1].legend(fontsize=8)
    bins = np.arange(40, 260, 5)
    for name in ("train", "test", "holdout"):
        axes[2].hist(sets[name]["length"], bins=bins, density=True, histtype="step", label=name)
    axes[2].axvline(187, color="grey", lw=0.8)
    axes[2].set(xlabel="unpadded length (samples at 120 Hz; 187 = no padding)", title="padding length")
    axes[2].legend()
    fig.tight_layout()
    return fig


def mitigations_figure(variants: Mapping[str, Any]) -> Figure:
    """Val and holdout macro-F1 per mitigation variant."""
    fig, ax = subplots(figsize=(8, 3.8))
    names = list(variants)
    for offset, key in ((-0.2, "val"), (0.2, "holdout")):
        ax.bar(np.arange(len(names)) + offset, [variants[n][key]["macro_f1"] for n in names], 0.4, label=key)
    ax.set(xticks=np.arange(len(names)), xticklabels=names, ylabel="macro-F1", title="Mitigations")
    ax.tick_params(axis="x", rotation=20)
    ax.legend()
    fig.tight_layout()
    return fig


# file name -> figure of (metrics, the beat tables of SETS)
FIGURES: dict[str, Callable[[Mapping[str, Any], Mapping[str, pd.DataFrame]], Figure]] = {
    "patient_shift.png": lambda m, sets: patient_shift_figure(m["patient_shift"]),
    "degradation.png": lambda m, sets: degradation_figure(m["synthetic"]),
    "label_shift.png": lambda m, sets: label_shift_figure(m["label_shift"]),
    "causes.png": lambda m, sets: causes_figure(m["causes"], sets),
}


def mitigation_plot_data(variants: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    """The ``dvc plots`` table of the mitigation study: macro-F1 per variant and set."""
    rows = [{"variant": n, **{f"{s}_macro_f1": v[s]["macro_f1"] for s in ("val", "test", "holdout")}}
            for n, v in variants.items()]  # fmt: skip
    return {"mitigations.csv": pd.DataFrame(rows)}


MITIGATION_FIGURES: dict[str, Callable[[Mapping[str, Any]], Figure]] = {"mitigations.png": mitigations_figure}


# ---------------------------------------------------------------- the report


def _ci(entry: Mapping[str, Any]) -> str:
    ci = entry["ci95"]
    return f"{fmt(entry['gap'])} ({fmt(ci['low'])} to {fmt(ci['high'])})"


def _pair(a: Any, b: Any) -> str:
    return f"{fmt(a)} / {fmt(b)}"


def _se_ppv(scores: Mapping[str, Any], c: str) -> str:
    return _pair(scores["per_class"][c]["recall"], scores["per_class"][c]["precision"])


def _side_by_side_table(metrics: Mapping[str, Any], worst: Mapping[str, Mapping[str, Any]]) -> str:
    """Every set, then each subsample under the strongest severity of each shift."""
    rows = [
        [
            name,
            s["beats"],
            s["accuracy"],
            s["macro_f1"],
            f"{fmt(s['ci95']['macro_f1']['low'])}–{fmt(s['ci95']['macro_f1']['high'])}",
            s["macro_f1_nsvf"],
            *(s["per_class"][c]["f1"] for c in CLASS_NAMES),
            _pair(s["aami"]["S"]["Se"], s["aami"]["S"]["+P"]),
            _pair(s["aami"]["V"]["Se"], s["aami"]["V"]["+P"]),
        ]
        for name, s in metrics["sets"].items()
    ]
    for kind, top in worst.items():
        for s in SHIFTED:
            rows.append(
                [
                    f"{s} subsample, {kind} ({top['level']})",
                    top[s]["drift"]["n_beats"],
                    top[s]["accuracy"],
                    top[s]["macro_f1"],
                    "–",
                    top[s]["macro_f1_nsvf"],
                    *(top[s]["per_class"][c]["f1"] for c in CLASS_NAMES),
                    _se_ppv(top[s], "S"),
                    _se_ppv(top[s], "V"),
                ]
            )
    headers = ["set", "beats", "accuracy", "macro-F1", "macro-F1 95 % CI", "macro-F1 (N, S, V, F)"]
    headers += [f"{c} F1" for c in CLASS_NAMES]
    return markdown_table([*headers, "S Se / +P", "V Se / +P"], rows)


def _patient_values(ps: Mapping[str, Any]) -> dict[str, Any]:
    beat, record = ps["beat_level"], ps["record_level"]
    rows = [
        [
            c,
            record["per_class"][c]["f1"]["a"],
            record["per_class"][c]["f1"]["b"],
            _ci(beat["per_class"][c]["f1"]),
            _ci(record["per_class"][c]["f1"]),
            _ci(record["per_class"][c]["recall"]),
            _ci(record["per_class"][c]["precision"]),
        ]
        for c in CLASS_NAMES
    ]
    macro, nsvf = record["macro_f1"], record["macro_f1_nsvf"]
    rows.append(["macro-F1", macro["a"], macro["b"], _ci(beat["macro_f1"]), _ci(macro), "–", "–"])
    rows.append(["macro-F1 (N, S, V, F)", nsvf["a"], nsvf["b"], _ci(beat["macro_f1_nsvf"]), _ci(nsvf), "–", "–"])
    headers = ["class", "test F1", "holdout F1", "F1 gap, beat CI", "F1 gap, record CI"]
    return {
        "cost_table": markdown_table([*headers, "Se gap, record CI", "+P gap, record CI"], rows),
        "macro_gap": macro["gap"],
        "macro_gap_low": macro["ci95"]["low"],
        "macro_gap_high": macro["ci95"]["high"],
        "nsvf_test": nsvf["a"],
        "nsvf_holdout": nsvf["b"],
        "nsvf_gap": nsvf["gap"],
        "nsvf_gap_low": nsvf["ci95"]["low"],
        "nsvf_gap_high": nsvf["ci95"]["high"],
        "q_note": q_note(ps["q_beats"]["test"], ps["q_beats"]["holdout"]),
        "s_f1_gap": record["per_class"]["S"]["f1"]["gap"],
        "v_f1_gap": record["per_class"]["V"]["f1"]["gap"],
        "f_f1_gap": record["per_class"]["F"]["f1"]["gap"],
    }


def _signed(value: float | None) -> str:
    return "–" if value is None else f"{value:+.3f}"


def _synthetic_values(
    synthetic: Mapping[str, list[dict[str, Any]]], drop: Mapping[str, dict[str, float]]
) -> dict[str, Any]:
    rows = [
        [
            kind,
            r["severity"],
            r["level"],
            r["test"][SHIFT_SCORE],
            r["holdout"][SHIFT_SCORE],
            *(r["holdout"]["per_class"][c]["f1"] for c in ("N", "S", "V", "F")),
            r["test"]["drift"]["max_feature_psi"],
            r["test"]["drift"]["worst"]["name"],
            r["test"]["drift"]["class_mix_psi"],
            r["test"]["drift"]["level"],
        ]
        for kind, kind_rows in synthetic.items()
        for r in kind_rows
    ]
    headers = ["shift", "severity", "level", "test macro-F1 (N, S, V, F)", "holdout macro-F1 (N, S, V, F)"]
    headers += [f"holdout {c} F1" for c in ("N", "S", "V", "F")]
    headers += ["test max PSI", "worst feature", "class-mix PSI", "drift level"]
    # ranked on the in-patient test: there the shift is the only change (the holdout already lost the patient shift)
    drops = sorted((v, k) for k, v in drop["test"].items())
    return {
        "degradation_table": markdown_table(headers, rows),
        "worst_shift": drops[0][1],
        "worst_shift_drop": _signed(drops[0][0]),
        "worst_shift_holdout_drop": _signed(drop["holdout"][drops[0][1]]),
        "worst_shift_level": synthetic[drops[0][1]][-1]["level"],
        "second_shift": drops[1][1],
        "second_shift_drop": _signed(drops[1][0]),
        "second_shift_holdout_drop": _signed(drop["holdout"][drops[1][1]]),
        "mildest_shift": drops[-1][1],
        "mildest_shift_drop": _signed(drops[-1][0]),
        "holdout_worst_shift": min(drop["holdout"], key=drop["holdout"].__getitem__),
        "holdout_worst_shift_drop": _signed(min(drop["holdout"].values())),
        "stretch_drop_test": _signed(drop["test"].get("time_stretch")),
        "stretch_drop_holdout": _signed(drop["holdout"].get("time_stretch")),
    }


def _label_values(rows: Sequence[Mapping[str, Any]], resample_beats: int) -> dict[str, Any]:
    table = [
        [
            r["scenario"],
            *(r["shares"][c] for c in ("N", "S", "V")),
            _se_ppv(r["weighted"], "S"),
            _se_ppv(r["resampled"], "S"),
            _se_ppv(r["weighted"], "V"),
            r["weighted"]["macro_f1"],
        ]
        for r in rows
    ]
    headers = ["scenario", "N share", "S share", "V share", "S Se / +P (weights)", "S Se / +P (resampled)"]
    return {
        "label_table": markdown_table([*headers, "V Se / +P (weights)", "macro-F1"], table),
        "label_resample_n": resample_beats,
    }


def _drift_row(name: str, d: Mapping[str, Any]) -> list[Any]:
    return [name, d["n_beats"], d["max_feature_psi"], d["worst"]["name"], d["max_ks"], d["class_mix_psi"], d["level"]]


def _drift_values(drift: Mapping[str, Any], worst: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    rows = [_drift_row(name, d) for name, d in drift["sets"].items()]
    rows += [
        _drift_row(f"{s} subsample, {kind} ({top['level']})", top[s]["drift"])
        for kind, top in worst.items()
        for s in SHIFTED
    ]
    headers = ["set (vs in-patient test)", "beats", "max feature PSI", "worst feature", "max KS", "class-mix PSI"]
    test_flags = [top["test"]["drift"]["level"] != "stable" for top in worst.values()]
    holdout = drift["sets"]["holdout"]
    return {
        "drift_table": markdown_table([*headers, "level"], rows),
        "psi_floor": drift["noise_floor_subsample"],
        "holdout_psi": holdout["max_feature_psi"],
        "holdout_psi_feature": holdout["worst"]["name"],
        "holdout_mix_psi": holdout["class_mix_psi"],
        "flagged_shifts": sum(test_flags),
        "n_shifts": len(test_flags),
    }


def _kept_sentence(mit: Mapping[str, Any], baseline: str, previous: str | None) -> str:
    """What the default params gain on the holdout and on validation over the ``previous`` variant."""
    if previous is None or previous not in mit:
        return ""
    versus = mit[previous][f"holdout_vs_{baseline}"]  # previous minus baseline: turned round
    val_base, val_prev = mit[baseline]["val"]["macro_f1"], mit[previous]["val"]["macro_f1"]
    return (
        f"What the default params keep: compared with `{previous}` ({', '.join(mit[previous]['features'])}), "
        f"the current `train` params (`{baseline}`: {', '.join(mit[baseline]['features'])}) gain "
        f"{fmt(-versus['gap'])} holdout macro-F1 (record-level 95 % interval {fmt(-versus['ci95']['high'])} to "
        f"{fmt(-versus['ci95']['low'])}; better in {fmt(1 - versus['share_positive'])} of the resamples) and "
        f"{fmt(val_base - val_prev)} validation macro-F1 ({fmt(val_base)} against {fmt(val_prev)})."
    )


def mitigation_report_values(mit: Mapping[str, Any], settings: MitigationSettings) -> dict[str, Any]:
    """The values of the mitigation report's placeholders, from the results of :func:`mitigations`."""
    baseline, previous = settings.baseline, settings.previous
    vs = f"holdout_vs_{baseline}"
    rows = [
        [
            name,
            ", ".join(v["features"]),
            v["best_iteration"],
            v["val"]["macro_f1"],
            v["test"]["macro_f1"],
            v["holdout"]["macro_f1"],
            v["holdout"]["accuracy"],
            _se_ppv(v["holdout"], "S"),
            _se_ppv(v["holdout"], "V"),
            _ci(v[vs]),
        ]
        for name, v in mit.items()
    ]
    headers = ["variant", "features", "best iteration", "val macro-F1", "test macro-F1", "holdout macro-F1"]
    headers += [
        "holdout accuracy",
        "holdout S Se / +P",
        "holdout V Se / +P",
        f"holdout macro-F1 vs {baseline} (record CI)",
    ]
    best = max(mit, key=lambda n: mit[n]["holdout"]["macro_f1"])
    clear = [n for n in mit if n != baseline and (mit[n][vs]["ci95"]["low"] or 0) > 0]
    agreed = [n for n in clear if mit[n]["val"]["macro_f1"] > mit[baseline]["val"]["macro_f1"]]
    best_val = max(mit, key=lambda n: mit[n]["val"]["macro_f1"])
    return {
        "mitigation_table": markdown_table(headers, rows),
        "baseline_variant": baseline,
        "best_variant": best,
        "best_variant_gain": mit[best][vs]["gap"],
        "best_variant_low": mit[best][vs]["ci95"]["low"],
        "best_variant_high": mit[best][vs]["ci95"]["high"],
        "best_variant_share": mit[best][vs]["share_positive"],
        "best_val_variant": best_val,
        "clear_variants": ", ".join(f"`{n}`" for n in clear) or "none",
        "agreed_variants": ", ".join(f"`{n}`" for n in agreed) or "none",
        "best_val_variant_gain": mit[best_val][vs]["gap"],
        "kept_sentence": _kept_sentence(mit, baseline, previous),
        "bootstrap": settings.bootstrap,
        "seed": settings.seed,
        "num_threads": settings.num_threads,
    }


def _cause_values(c: Mapping[str, Any], report_records: int, premature_ratio: float) -> dict[str, Any]:
    rows = [
        [r["record"], r["beats"], r["accuracy"], r["S"], r["S_missed"], r["N_as_S"], r["V"], r["template_distance"]]
        for r in c["morphology"]["records"][:report_records]
    ]
    headers = ["record", "beats", "accuracy", "S", "S missed", "N called S", "V", "N-template distance"]
    rhythm, length = c["rhythm"], c["length"]
    return {
        "record_table": markdown_table(headers, rows),
        "template_distance_test": c["morphology"]["median_template_distance"]["test"],
        "template_distance_holdout": c["morphology"]["median_template_distance"]["holdout"],
        "distance_rho": c["morphology"]["spearman_distance_vs_error"],
        "s_premature_train": rhythm["train"]["S_premature_share"],
        "s_premature_holdout": rhythm["holdout"]["S_premature_share"],
        "n_premature_holdout": rhythm["holdout"]["N_premature_share"],
        "s_se_premature": rhythm["holdout"]["S_se_premature"],
        "s_se_not_premature": rhythm["holdout"]["S_se_not_premature"],
        "n_as_s_premature": rhythm["holdout"]["N_as_S_premature"],
        "n_as_s_not_premature": rhythm["holdout"]["N_as_S_not_premature"],
        "test_s_se_premature": rhythm["test"]["S_se_premature"],
        "test_s_se_not_premature": rhythm["test"]["S_se_not_premature"],
        "premature_ratio": premature_ratio,
        "length_median_train": f"{length['median']['train']:g}",
        "length_median_holdout": f"{length['median']['holdout']:g}",
        "length_ks_holdout": length["ks_train_holdout"],
        "length_ks_test": length["ks_train_test"],
        "length_quartile_accuracy": ", ".join(fmt(v) for v in length["holdout_accuracy_by_train_quartile"]),
        "length_quartile_share": ", ".join(fmt(v) for v in length["holdout_share_by_train_quartile"]),
    }


def report_values(metrics: Mapping[str, Any], settings: ShiftSettings) -> dict[str, Any]:
    """The values of the report template's placeholders, from the metrics of :func:`analyse`."""
    synthetic = metrics["synthetic"]
    worst = {kind: rows[-1] for kind, rows in synthetic.items()}  # the strongest severity of each shift
    drop = {
        s: {k: worst[k][s][SHIFT_SCORE] - rows[0][s][SHIFT_SCORE] for k, rows in synthetic.items()} for s in SHIFTED
    }
    return {
        "side_by_side_table": _side_by_side_table(metrics, worst),
        **_patient_values(metrics["patient_shift"]),
        **_synthetic_values(synthetic, drop),
        **_label_values(metrics["label_shift"], settings.label_resample_beats),
        **_drift_values(metrics["drift"], worst),
        **_cause_values(metrics["causes"], settings.report_records, settings.premature_ratio),
        "sub_test": metrics["subsample"]["test"],
        "sub_holdout": metrics["subsample"]["holdout"],
        "full_test": metrics["sets"]["test"]["beats"],
        "full_holdout": metrics["sets"]["holdout"]["beats"],
        "bootstrap": settings.bootstrap,
        "seed": settings.seed,
        "impute_method": settings.dropout_method,
    }
