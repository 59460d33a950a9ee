"""Exploratory analysis of the beat table: pure functions returning tables, numbers and figures.

Nothing here reads files or params: the ``eda`` stage passes the beat table, the split sets and an
``EdaSettings`` to ``analyse`` and writes what ``ecgbeats.analysis.eda_report`` makes of the ``EdaResult``.
Distances are Euclidean over the 187 scaled samples (padding included: it is what every model
sees). Times are in ms from the R peak at the rows' true rate, ``BEAT_FS`` = 120 Hz.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from scipy.stats import rankdata, skew

from ecgbeats.analysis.plots import COLORS, subplots
from ecgbeats.data.aami import CLASS_DESCRIPTIONS, CLASS_NAMES, DS1, DS2, PACED
from ecgbeats.data.beats import BEAT_FS, BEAT_SAMPLES
from ecgbeats.data.dataset import SAMPLE_COLUMNS
from ecgbeats.data.sampling import per_class_sample

log = logging.getLogger(__name__)

MS_PER_SAMPLE = 1000.0 / BEAT_FS
TIME_MS = np.arange(BEAT_SAMPLES) * MS_PER_SAMPLE
WINDOW_MS = BEAT_SAMPLES * 1000 / BEAT_FS
RHYTHM_FEATURES = ("rr_prev", "rr_next", "rr_local", "rr_prev/rr_local", "rr_next/rr_local", "length_ms")


# ---------------------------------------------------------------- class balance and patients


def class_summary(labels: np.ndarray, records: np.ndarray | None = None) -> dict[str, Any]:
    """Counts and shares per class, the imbalance ratio (largest / smallest non-empty class), the
    classes absent, and the number of records."""
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=len(CLASS_NAMES))[: len(CLASS_NAMES)]
    total = int(counts.sum())
    present = counts[counts > 0]
    return {
        "beats": total,
        "records": None if records is None else int(pd.Series(records).nunique()),
        "counts": {c: int(n) for c, n in zip(CLASS_NAMES, counts, strict=True)},
        "shares": {c: (float(n / total) if total else 0.0) for c, n in zip(CLASS_NAMES, counts, strict=True)},
        "imbalance_ratio": float(present.max() / present.min()) if len(present) else None,
        "absent": [c for c, n in zip(CLASS_NAMES, counts, strict=True) if n == 0],
    }


def record_composition(records: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    """Beats per record (rows, sorted) and class (columns ``CLASS_NAMES``)."""
    frame = pd.crosstab(pd.Series(np.asarray(records, dtype=object), name="record"), pd.Series(labels, name="label"))
    frame = frame.reindex(columns=range(len(CLASS_NAMES)), fill_value=0)
    frame.columns = list(CLASS_NAMES)
    return frame.sort_index().astype(np.int64)


def class_concentration(composition: pd.DataFrame, share: float = 0.8) -> pd.DataFrame:
    """Per class: how many records hold it, the largest holder and its share, and the fewest
    records that together hold ``share`` of the class's beats."""
    rows = []
    for name in CLASS_NAMES:
        counts = composition[name].sort_values(ascending=False)
        total = int(counts.sum())
        if total == 0:
            rows.append(
                {
                    "class": name,
                    "beats": 0,
                    "records": 0,
                    "top_record": None,
                    "top_share": None,
                    "records_for_share": None,
                }
            )
            continue
        cumulative = counts.cumsum().to_numpy() / total
        rows.append(
            {
                "class": name,
                "beats": total,
                "records": int((counts > 0).sum()),
                "top_record": str(counts.index[0]),
                "top_share": float(counts.iloc[0] / total),
                "records_for_share": int(np.searchsorted(cumulative, share - 1e-12) + 1),
            }
        )
    return pd.DataFrame(rows).set_index("class")


def record_overlap(
    train_records: np.ndarray, train_labels: np.ndarray, test_records: np.ndarray, test_labels: np.ndarray
) -> dict[str, float]:
    """Share of test beats whose patient (record) also has training beats, and training beats of the
    same class: what a beat-level split leaks."""
    test_records = np.asarray(test_records, dtype=object)
    if len(test_records) == 0:
        return {"same_record": 0.0, "same_record_and_class": 0.0}
    train_pairs = set(zip(np.asarray(train_records, dtype=object), np.asarray(train_labels).tolist(), strict=True))
    in_train = np.isin(test_records, np.unique(np.asarray(train_records, dtype=object)))
    same_class = np.array(
        [(r, y) in train_pairs for r, y in zip(test_records, np.asarray(test_labels).tolist(), strict=True)]
    )
    return {"same_record": float(in_train.mean()), "same_record_and_class": float(same_class.mean())}


def growth_factors(counts: Mapping[str, int], max_ratio: float, min_beats: int = 1) -> dict[str, float | None]:
    """Factor by which each class must grow so that the largest class outnumbers it at most
    ``max_ratio`` times, rounded up to a tenth (1.0: none needed). A class with fewer than
    ``min_beats`` beats gets None: too few distinct beats to multiply."""
    largest = max(counts.values())
    target = largest / max_ratio
    return {
        name: None if n < max(min_beats, 1) else (float(np.ceil(10 * target / n) / 10) if n < target else 1.0)
        for name, n in counts.items()
    }


# ---------------------------------------------------------------- shape, length, rhythm


def class_profiles(samples: np.ndarray, labels: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Mean and standard deviation per position, for each class present."""
    return {
        name: (samples[labels == i].mean(axis=0), samples[labels == i].std(axis=0))
        for i, name in enumerate(CLASS_NAMES)
        if (labels == i).any()
    }


def position_stats(samples: np.ndarray) -> pd.DataFrame:
    """Mean, standard deviation and skewness of every sample position over all beats."""
    with np.errstate(invalid="ignore", divide="ignore"):
        skewness = skew(samples, axis=0, bias=True)
    return pd.DataFrame(
        {
            "position": np.arange(samples.shape[1]),
            "time_ms": TIME_MS[: samples.shape[1]],
            "mean": samples.mean(axis=0),
            "std": samples.std(axis=0),
            "skewness": np.nan_to_num(skewness),
        }
    )


def padding_by_position(lengths: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    """Share of each class's beats that are zero padding at each position (length <= position)."""
    lengths = np.asarray(lengths)
    frame = pd.DataFrame({"position": np.arange(BEAT_SAMPLES), "time_ms": TIME_MS})
    for i, name in enumerate(CLASS_NAMES):
        own = np.sort(lengths[labels == i])
        frame[name] = np.searchsorted(own, np.arange(BEAT_SAMPLES), side="right") / len(own) if len(own) else np.nan
    return frame


def padding_share(lengths: np.ndarray) -> np.ndarray:
    """Share of each beat's 187 samples that are zero padding."""
    return np.clip(BEAT_SAMPLES - np.asarray(lengths), 0, None) / BEAT_SAMPLES


def rhythm_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The rhythm features of every beat: RR intervals (s), their ratios to the local rhythm, and
    the unpadded length in ms."""
    out = frame[["rr_prev", "rr_next", "rr_local"]].astype(np.float64).copy()
    out["rr_prev/rr_local"] = out["rr_prev"] / out["rr_local"]
    out["rr_next/rr_local"] = out["rr_next"] / out["rr_local"]
    out["length_ms"] = frame["length"].to_numpy(dtype=np.float64) * MS_PER_SAMPLE
    return out.reset_index(drop=True)


def rhythm_summary(rhythm: pd.DataFrame, labels: np.ndarray, premature_ratio: float) -> pd.DataFrame:
    """Per class: median length, share cut at 187 samples, median RR values, and the share of
    premature beats (``rr_prev / rr_local`` below ``premature_ratio``)."""
    rows = []
    for i, name in enumerate(CLASS_NAMES):
        part = rhythm[labels == i]
        if part.empty:
            continue
        ratio = part["rr_prev/rr_local"].dropna()
        rows.append(
            {
                "class": name,
                "beats": len(part),
                "length_ms": float(part["length_ms"].median()),
                "cut": float((part["length_ms"] > BEAT_SAMPLES * MS_PER_SAMPLE).mean()),
                "rr_prev": float(part["rr_prev"].median()),
                "rr_next": float(part["rr_next"].median()),
                "prev_local": float(ratio.median()) if len(ratio) else None,
                "next_local": float(part["rr_next/rr_local"].median()),
                "premature": float((ratio < premature_ratio).mean()) if len(ratio) else None,
            }
        )
    return pd.DataFrame(rows).set_index("class")


def auc_columns(values: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """ROC-AUC of every column of ``values`` as a score for ``positive`` (rank formula, ties
    averaged); NaN where a class is missing."""
    values = np.asarray(values, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if values.ndim == 1:
        values = values[:, None]
    if n_pos == 0 or n_neg == 0:
        return np.full(values.shape[1], np.nan)
    ranks = rankdata(values, axis=0)
    return (ranks[positive].sum(axis=0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def separability(
    rhythm: pd.DataFrame, samples: np.ndarray, labels: np.ndarray, reference: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """How well single values separate each class from the ``reference`` class (N).

    Returns (rhythm AUCs: feature x class, sample AUCs: position x class). An AUC below 0.5 means
    the class has lower values; ``max(AUC, 1 - AUC)`` is the separation either way.
    """
    rhythm_rows, sample_cols = {}, {}
    for i, name in enumerate(CLASS_NAMES):
        if i == reference or not (labels == i).any() or not (labels == reference).any():
            continue
        pair = (labels == i) | (labels == reference)
        positive = labels[pair] == i
        aucs = {}
        for feature in RHYTHM_FEATURES:
            column = rhythm[feature].to_numpy()[pair]
            finite = np.isfinite(column)
            aucs[feature] = float(auc_columns(column[finite], positive[finite])[0])
        rhythm_rows[name] = aucs
        sample_cols[name] = auc_columns(samples[pair], positive)
    sample_frame = pd.DataFrame(sample_cols, index=pd.Index(TIME_MS[: samples.shape[1]], name="time_ms"))
    return pd.DataFrame(rhythm_rows), sample_frame


def histogram_by_class(values: np.ndarray, labels: np.ndarray, bins: np.ndarray, column: str) -> pd.DataFrame:
    """Share of each class's beats per bin (values outside the bins go to the first or last)."""
    values = np.clip(np.asarray(values, dtype=np.float64), bins[0], bins[-1] - 1e-9)
    frame = pd.DataFrame({column: (bins[:-1] + bins[1:]) / 2})
    for i, name in enumerate(CLASS_NAMES):
        own = values[(labels == i) & np.isfinite(values)]
        counts = np.histogram(own, bins=bins)[0]
        frame[name] = counts / len(own) if len(own) else np.nan
    return frame


# ---------------------------------------------------------------- suspicious beats


def longest_run(mask: np.ndarray) -> np.ndarray:
    """Length of the longest run of True in each row."""
    best = np.zeros(mask.shape[0], dtype=np.int64)
    current = np.zeros(mask.shape[0], dtype=np.int64)
    for column in mask.T:
        current = np.where(column, current + 1, 0)
        np.maximum(best, current, out=best)
    return best


def distance_to_class_mean(samples: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distance of every beat to its class mean, and its robust z-score within the class
    ((d - median) / (1.4826 MAD))."""
    distance = np.zeros(len(samples))
    z = np.zeros(len(samples))
    for i in range(len(CLASS_NAMES)):
        own = labels == i
        if not own.any():
            continue
        d = np.linalg.norm(samples[own] - samples[own].mean(axis=0), axis=1)
        median = np.median(d)
        mad = 1.4826 * np.median(np.abs(d - median))
        distance[own] = d
        z[own] = (d - median) / mad if mad > 0 else 0.0
    return distance, z


def suspicious_beats(
    samples: np.ndarray, lengths: np.ndarray, labels: np.ndarray, *, flat_std: float, clip_run: int, outlier_z: float
) -> pd.DataFrame:
    """Flags per beat.

    - ``flat``: the unpadded samples vary less than ``flat_std`` (a lost or disconnected lead);
    - ``clipped``: ``clip_run`` or more consecutive unpadded samples sit exactly at the beat's
      maximum or minimum (a plateau: amplifier or ADC saturation);
    - ``far``: the distance to the class mean has a robust z-score above ``outlier_z``.
    """
    kept = np.minimum(np.asarray(lengths), samples.shape[1])
    valid = np.arange(samples.shape[1]) < kept[:, None]
    count = valid.sum(axis=1)
    mean = np.where(valid, samples, 0).sum(axis=1) / count
    std = np.sqrt(np.where(valid, (samples - mean[:, None]) ** 2, 0).sum(axis=1) / count)
    top = np.where(valid, samples, -np.inf).max(axis=1)
    bottom = np.where(valid, samples, np.inf).min(axis=1)
    plateau = np.maximum(
        longest_run(valid & (samples == top[:, None])), longest_run(valid & (samples == bottom[:, None]))
    )
    distance, z = distance_to_class_mean(samples, labels)
    return pd.DataFrame(
        {
            "std": std,
            "plateau": plateau,
            "distance": distance,
            "z": z,
            "flat": std < flat_std,
            "clipped": plateau >= clip_run,
            "far": z > outlier_z,
        }
    )


# ---------------------------------------------------------------- structure: PCA, correlation


def covariance_structure(samples: np.ndarray) -> dict[str, np.ndarray]:
    """Principal axes (from the covariance matrix of all beats), explained variance ratios, the
    mean, and the correlation matrix between positions."""
    mean = samples.mean(axis=0, dtype=np.float64)
    centred = samples - mean
    cov = centred.T.astype(np.float64) @ centred.astype(np.float64) / max(len(samples) - 1, 1)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1]
    values, vectors = np.clip(values[order], 0, None), vectors[:, order]
    # a fixed sign per axis: the largest loading positive, so reruns give the same picture
    vectors *= np.where(vectors[np.abs(vectors).argmax(axis=0), range(vectors.shape[1])] < 0, -1, 1)
    sd = np.sqrt(np.diag(cov))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(sd, sd)
    return {
        "mean": mean,
        "components": vectors.T,
        "explained": values / values.sum() if values.sum() > 0 else values,
        "corr": corr,
    }


def components_for(explained: np.ndarray, share: float) -> int:
    """Fewest principal components that explain ``share`` of the variance."""
    return int(np.searchsorted(np.cumsum(explained), share - 1e-12) + 1)


def lag_correlation(corr: np.ndarray) -> np.ndarray:
    """Mean correlation between positions ``lag`` apart, for every lag (NaN-safe)."""
    return np.array([np.nanmean(np.diagonal(corr, offset=lag)) for lag in range(corr.shape[0])])


# ---------------------------------------------------------------- patients: within vs between


def patient_variability(
    samples: np.ndarray, records: np.ndarray, labels: np.ndarray, min_beats: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Within- versus between-patient spread of each class's beats.

    For every class, the records holding at least ``min_beats`` of its beats each get a class
    mean. A beat's ``own`` distance is to its own record's mean without itself (leave-one-out);
    ``other`` is the mean and ``nearest_other`` the smallest distance to the other records' means;
    ``nearest_is_own`` says whether its own record's mean is the closest of all. Per class:
    medians, their ratio, the share of beats nearest their own record (against the chance
    1 / records), and the share of the class's variance that lies between records.

    Returns (per-class summary, per-beat distances).
    """
    records = np.asarray(records, dtype=object)
    summary, per_beat = [], []
    for i, name in enumerate(CLASS_NAMES):
        own_class = labels == i
        names, counts = np.unique(records[own_class], return_counts=True)
        kept = names[counts >= min_beats]
        if len(kept) < 2:
            continue
        mask = own_class & np.isin(records, kept)
        x = samples[mask].astype(np.float64)
        rec = records[mask]
        position = np.searchsorted(kept, rec)
        n = np.bincount(position, minlength=len(kept)).astype(np.float64)
        means = np.zeros((len(kept), x.shape[1]))
        np.add.at(means, position, x)
        means /= n[:, None]
        sq = (x**2).sum(axis=1)[:, None] + (means**2).sum(axis=1)[None, :] - 2 * x @ means.T
        dist = np.sqrt(np.clip(sq, 0, None))
        rows = np.arange(len(x))
        own = dist[rows, position] * n[position] / (n[position] - 1)  # leave-one-out own mean
        others = dist.copy()
        others[rows, position] = np.nan
        other_mean = np.nanmean(others, axis=1)
        nearest_other = np.nanmin(others, axis=1)
        overall = x.mean(axis=0)
        between = float((n * ((means - overall) ** 2).sum(axis=1)).sum())
        total = float(((x - overall) ** 2).sum())
        summary.append(
            {
                "class": name,
                "records": len(kept),
                "beats": len(x),
                "own": float(np.median(own)),
                "other": float(np.median(other_mean)),
                "nearest_other": float(np.median(nearest_other)),
                "ratio": float(np.median(other_mean) / np.median(own)) if np.median(own) > 0 else None,
                "nearest_is_own": float((own < nearest_other).mean()),
                "chance": 1.0 / len(kept),
                "between_share": between / total if total > 0 else None,
            }
        )
        per_beat.append(pd.DataFrame({"class": name, "own": own, "other": other_mean, "nearest_other": nearest_other}))
    per_beat_frame = (
        pd.concat(per_beat, ignore_index=True)
        if per_beat
        else pd.DataFrame(columns=["class", "own", "other", "nearest_other"])
    )
    return pd.DataFrame(summary).set_index("class") if summary else pd.DataFrame(), per_beat_frame


def nearest_neighbours(train: np.ndarray, queries: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Index of the nearest training row (Euclidean) of every query row."""
    train = np.asarray(train, dtype=np.float32)
    queries = np.asarray(queries, dtype=np.float32)
    train_sq = (train**2).sum(axis=1)
    nearest = np.empty(len(queries), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        block = queries[start : start + chunk]
        nearest[start : start + chunk] = np.argmin(train_sq[None, :] - 2 * block @ train.T, axis=1)
    return nearest


def neighbour_check(
    train_x: np.ndarray,
    train_y: np.ndarray,
    train_records: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    test_records: np.ndarray,
    *,
    per_class: int,
    seed: int,
    classes: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The nearest training beat (raw samples) of up to ``per_class`` test beats of each class: how
    often it comes from the same patient, and how often it has the same label (recall per class and
    their mean over ``classes``, default all present: a 1-NN balanced accuracy)."""
    index = per_class_sample(test_y, per_class, seed)
    nearest = nearest_neighbours(train_x, test_x[index])
    y, predicted = test_y[index], train_y[nearest]
    same_record = np.asarray(train_records, dtype=object)[nearest] == np.asarray(test_records, dtype=object)[index]
    recall = {name: float((predicted[y == i] == i).mean()) for i, name in enumerate(CLASS_NAMES) if (y == i).any()}
    averaged = [recall[c] for c in (classes if classes is not None else recall) if c in recall]
    return {
        "queries": len(index),
        "per_class_queries": {name: int((y == i).sum()) for i, name in enumerate(CLASS_NAMES)},
        "same_record": float(same_record.mean()) if len(index) else None,
        "recall": recall,
        "balanced_accuracy": float(np.mean(averaged)) if averaged else None,
    }


# ---------------------------------------------------------------- figures


def _time_axis(ax: Axes, ylabel: str = "scaled amplitude") -> None:
    ax.set_xlabel("time from R peak (ms)")
    ax.set_ylabel(ylabel)


def class_distribution_figure(summaries: Mapping[str, Mapping[str, Any]]) -> Figure:
    """Beats per class over all data (left) and class shares per protocol and set (right, log)."""
    fig, (left, right) = subplots(1, 2, figsize=(13, 4.6), gridspec_kw={"width_ratios": [1, 2]})
    overall = summaries["all beats"]
    counts = [overall["counts"][c] for c in CLASS_NAMES]
    bars = left.bar(CLASS_NAMES, counts, color=[COLORS[c] for c in CLASS_NAMES])
    for bar, c in zip(bars, CLASS_NAMES, strict=True):
        left.annotate(
            f"{overall['counts'][c]:,}\n{100 * overall['shares'][c]:.1f} %",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    left.set(
        yscale="log",
        ylabel="beats (log scale)",
        xlabel="AAMI class",
        title=f"All {overall['beats']:,} beats (imbalance {overall['imbalance_ratio']:.0f}:1)",
    )
    left.set_ylim(top=max(counts) * 8)
    names = [n for n in summaries if n != "all beats"]
    width = 0.8 / max(len(CLASS_NAMES), 1)
    x = np.arange(len(names))
    for k, c in enumerate(CLASS_NAMES):
        shares = [max(summaries[n]["shares"][c], 1e-5) for n in names]
        right.bar(x + (k - 2) * width, shares, width, color=COLORS[c], label=f"{c}: {CLASS_DESCRIPTIONS[c]}")
    right.set(
        yscale="log", xticks=x, ylabel="share of the set's beats (log scale)", title="Class shares per protocol and set"
    )
    right.set_xticklabels([n.replace(" ", "\n", 1) for n in names], fontsize=8)
    right.set_ylim(1e-5, 2)
    right.legend(fontsize=7, loc="lower left", ncol=2)
    fig.tight_layout()
    return fig


def record_composition_figure(composition: pd.DataFrame, groups: Mapping[str, str]) -> Figure:
    """Heat map: the share of each class's beats held by each record, with the beat counts."""
    order = sorted(composition.index, key=lambda r: ({"DS1": 0, "DS2": 1}.get(groups.get(r, ""), 2), r))
    comp = composition.loc[order]
    share = comp / comp.sum(axis=0).replace(0, np.nan)
    fig, ax = subplots(figsize=(7.5, max(3.0, 0.24 * len(comp) + 1.5)))
    image = ax.imshow(share.fillna(0).to_numpy(), aspect="auto", cmap="Reds", vmin=0, vmax=max(0.5, share.max().max()))
    for (i, j), value in np.ndenumerate(comp.to_numpy()):
        if value:
            ax.text(
                j,
                i,
                f"{value:,}",
                ha="center",
                va="center",
                fontsize=6.5,
                color="white" if share.iloc[i, j] > 0.3 else "black",
            )
    ax.set_xticks(range(len(CLASS_NAMES)), [f"{c}\n{CLASS_DESCRIPTIONS[c].split(' ')[0]}" for c in CLASS_NAMES])
    ax.set_yticks(range(len(comp)), [f"{r} ({groups.get(r, '–')})" for r in comp.index], fontsize=7)
    ax.set(
        xlabel="AAMI class",
        ylabel="record (patient) and its protocol group",
        title="Which patients hold which classes\n(colour: share of the class's beats; text: beats)",
    )
    fig.colorbar(image, ax=ax, shrink=0.5, label="share of the class's beats in this record")
    fig.tight_layout()
    return fig


def class_mean_figure(profiles: Mapping[str, tuple[np.ndarray, np.ndarray]], counts: Mapping[str, int]) -> Figure:
    """Mean beat and a ±1 standard deviation band per class."""
    fig, axes = subplots(1, len(CLASS_NAMES), figsize=(17, 3.6), sharey=True)
    for ax, name in zip(axes, CLASS_NAMES, strict=True):
        if name in profiles:
            mean, sd = profiles[name]
            ax.fill_between(TIME_MS, mean - sd, mean + sd, color=COLORS[name], alpha=0.25, label="±1 SD")
            ax.plot(TIME_MS, mean, color=COLORS[name], lw=2, label="mean")
            ax.legend(fontsize=8)
        ax.set_title(f"{name}: {CLASS_DESCRIPTIONS[name]}\n({counts.get(name, 0):,} beats)", fontsize=9)
        _time_axis(ax)
    fig.suptitle("Mean beat per class with a ±1 SD band (padding zeros included)")
    fig.tight_layout()
    return fig


def examples_figure(
    samples: np.ndarray, lengths: np.ndarray, labels: np.ndarray, records: np.ndarray, per_class: int, seed: int
) -> Figure:
    """A grid of random beats: one row per class, unpadded part solid, padding dotted."""
    rng = np.random.default_rng(seed)
    fig, axes = subplots(
        len(CLASS_NAMES),
        per_class,
        figsize=(2.1 * per_class, 1.7 * len(CLASS_NAMES)),
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    for row, name in enumerate(CLASS_NAMES):
        index = np.flatnonzero(labels == row)
        chosen: np.ndarray | list[int] = (
            rng.choice(index, size=min(per_class, len(index)), replace=False) if len(index) else []
        )
        for col, ax in enumerate(axes[row]):
            if col >= len(chosen):
                ax.axis("off")
                continue
            k = chosen[col]
            kept = min(int(lengths[k]), BEAT_SAMPLES)
            ax.plot(TIME_MS[:kept], samples[k, :kept], color=COLORS[name], lw=1)
            ax.plot(TIME_MS[kept - 1 :], samples[k, kept - 1 :], color="grey", lw=0.8, ls=":")
            ax.set_title(f"{name}, record {records[k]}", fontsize=7)
            ax.tick_params(labelsize=6)
        axes[row][0].set_ylabel(f"{name}\nscaled amplitude", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("time from R peak (ms)", fontsize=7)
    fig.suptitle("Random example beats per class (dotted: zero padding)")
    fig.tight_layout()
    return fig


def rhythm_figure(length_hist: pd.DataFrame, ratio_hist: pd.DataFrame, premature_ratio: float) -> Figure:
    """Distributions per class of the unpadded length and of rr_prev / rr_local."""
    fig, (left, right) = subplots(1, 2, figsize=(13, 4.2))
    for name in CLASS_NAMES:
        if length_hist[name].notna().any():
            left.plot(length_hist["length_ms"], length_hist[name], color=COLORS[name], label=name, lw=1.5)
            right.plot(ratio_hist["rr_prev_over_local"], ratio_hist[name], color=COLORS[name], label=name, lw=1.5)
    left.axvline(
        BEAT_SAMPLES * MS_PER_SAMPLE, color="grey", ls="--", lw=0.8, label="187 samples (last bin: all longer, cut)"
    )
    left.set(
        xlabel="unpadded beat length (ms; about 1.2 × the following RR interval)",
        ylabel="share of the class's beats",
        title="Beat length (heart-rate proxy) per class",
    )
    right.axvline(premature_ratio, color="grey", ls="--", lw=0.8, label=f"premature below {premature_ratio}")
    right.set(
        xlabel="previous RR / local mean RR (1 = on time, < 1 = early)",
        ylabel="share of the class's beats",
        title="Prematurity: the previous RR interval against the local rhythm",
    )
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    fig.tight_layout()
    return fig


def position_figure(stats: pd.DataFrame, padding: pd.DataFrame) -> Figure:
    """Mean ± SD and skewness per position over all beats, and the padded share per class."""
    fig, axes = subplots(1, 3, figsize=(16, 4))
    axes[0].fill_between(
        stats["time_ms"],
        stats["mean"] - stats["std"],
        stats["mean"] + stats["std"],
        alpha=0.3,
        color="black",
        label="±1 SD",
    )
    axes[0].plot(stats["time_ms"], stats["mean"], color="black", label="mean")
    axes[0].plot(stats["time_ms"], stats["std"], color="tab:orange", label="SD")
    axes[0].set_title("Mean and SD per position, all beats")
    _time_axis(axes[0])
    axes[0].legend(fontsize=8)
    axes[1].plot(stats["time_ms"], stats["skewness"], color="black")
    axes[1].axhline(0, color="grey", lw=0.8)
    axes[1].set_title("Skewness per position, all beats")
    _time_axis(axes[1], "skewness")
    for name in CLASS_NAMES:
        if padding[name].notna().any():
            axes[2].plot(padding["time_ms"], padding[name], color=COLORS[name], label=name)
    axes[2].set_title("Zero padding: share of beats already padded")
    _time_axis(axes[2], "share of the class's beats")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    return fig


def suspicious_figure(
    samples: np.ndarray,
    lengths: np.ndarray,
    labels: np.ndarray,
    flags: pd.DataFrame,
    profiles: Mapping[str, tuple[np.ndarray, np.ndarray]],
    seed: int,
    per_kind: int = 6,
) -> Figure:
    """Counts of flagged beats per class, and examples of each kind."""
    kinds = {"flat": "flat (lead off?)", "clipped": "clipped (plateau at max/min)", "far": "far from class mean"}
    rng = np.random.default_rng(seed)
    fig, axes = subplots(1, 4, figsize=(18, 4))
    x = np.arange(len(CLASS_NAMES))
    for k, (kind, label) in enumerate(kinds.items()):
        counts = [int(flags[kind][labels == i].sum()) for i in range(len(CLASS_NAMES))]
        axes[0].bar(x + (k - 1) * 0.27, counts, 0.27, label=label)
    axes[0].set(
        xticks=x,
        xticklabels=CLASS_NAMES,
        yscale="symlog",
        xlabel="AAMI class",
        ylabel="flagged beats (symlog scale)",
        title="Suspicious beats per class",
    )
    axes[0].legend(fontsize=8)
    for ax, (kind, label) in zip(axes[1:], kinds.items(), strict=True):
        index = np.flatnonzero(flags[kind].to_numpy())
        if kind == "far":  # the most extreme beat of every class with far beats, and its class mean
            chosen: np.ndarray | list[Any] = [
                index[labels[index] == i][np.argmax(flags["z"].to_numpy()[index[labels[index] == i]])]
                for i in range(len(CLASS_NAMES))
                if (labels[index] == i).any()
            ]
        else:
            chosen = rng.choice(index, size=min(per_kind, len(index)), replace=False) if len(index) else []
        shown = set()
        for k in chosen:
            name = CLASS_NAMES[labels[k]]
            kept = min(int(lengths[k]), BEAT_SAMPLES)
            ax.plot(
                TIME_MS[:kept],
                samples[k, :kept],
                color=COLORS[name],
                lw=0.9,
                alpha=0.8,
                label=None if name in shown else f"{name} beat",
            )
            if kind == "far" and name not in shown:
                ax.plot(TIME_MS, profiles[name][0], color=COLORS[name], lw=2.2, ls="--", label=f"mean {name}")
            shown.add(name)
        if len(chosen):
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "none found", ha="center", va="center", transform=ax.transAxes)
            ax.set_xlim(0, TIME_MS[-1])
        what = "most extreme per class" if kind == "far" else "random examples"
        ax.set_title(f"{label}: {len(index):,} beats ({what})", fontsize=10)
        _time_axis(ax)
    fig.tight_layout()
    return fig


def pca_figure(scores: np.ndarray, labels: np.ndarray, structure: Mapping[str, np.ndarray]) -> Figure:
    """Beats on the first two principal axes, coloured by class, and the axes' loadings over time."""
    explained = structure["explained"]
    fig, (left, right) = subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [1.2, 1]})
    for i, name in enumerate(CLASS_NAMES):
        own = labels == i
        if own.any():
            left.scatter(
                scores[own, 0],
                scores[own, 1],
                s=4,
                alpha=0.45,
                color=COLORS[name],
                label=f"{name} ({int(own.sum()):,} shown)",
            )
    left.set(
        xlabel=f"PC1 ({100 * explained[0]:.1f} % of variance)",
        ylabel=f"PC2 ({100 * explained[1]:.1f} %)",
        title="PCA of the 187 samples (equal-size class samples)",
    )
    left.legend(markerscale=3, fontsize=8)
    for k in range(3):
        right.plot(TIME_MS, structure["components"][k], label=f"PC{k + 1} ({100 * explained[k]:.1f} %)")
    right.axhline(0, color="grey", lw=0.8)
    right.set_title("Loadings of the first principal axes")
    _time_axis(right, "loading")
    right.legend(fontsize=8)
    fig.tight_layout()
    return fig


def correlation_figure(corr: np.ndarray, lag_corr: np.ndarray) -> Figure:
    """Correlation between sample positions, and the mean correlation against the lag."""
    fig, (left, right) = subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [1.1, 1]})
    end = TIME_MS[-1]
    image = left.imshow(np.nan_to_num(corr), cmap="RdBu_r", vmin=-1, vmax=1, extent=(0, end, end, 0))
    left.set(xlabel="time from R peak (ms)", ylabel="time from R peak (ms)", title="Correlation between positions")
    fig.colorbar(image, ax=left, shrink=0.8, label="Pearson r")
    right.plot(np.arange(len(lag_corr)) * MS_PER_SAMPLE, lag_corr, color="black")
    right.axhline(0, color="grey", lw=0.8)
    right.set(xlabel="lag between positions (ms)", ylabel="mean Pearson r", title="Mean correlation against lag")
    fig.tight_layout()
    return fig


def variability_figure(per_beat: pd.DataFrame, summary: pd.DataFrame) -> Figure:
    """Distance of beats to their own record's class mean versus other records' class means."""
    fig, (left, right) = subplots(1, 2, figsize=(13, 4.4))
    names = [n for n in CLASS_NAMES if n in set(per_beat["class"])]
    data, positions, colours = [], [], []
    for k, name in enumerate(names):
        part = per_beat[per_beat["class"] == name]
        data += [part["own"].to_numpy(), part["other"].to_numpy()]
        positions += [3 * k, 3 * k + 1]
        colours += [COLORS[name], "lightgrey"]
    if data:
        boxes = left.boxplot(data, positions=positions, widths=0.8, showfliers=False, patch_artist=True)
        for patch, colour in zip(boxes["boxes"], colours, strict=True):
            patch.set_facecolor(colour)
        left.set_xticks([3 * k + 0.5 for k in range(len(names))], names)
    left.set(
        xlabel="AAMI class (coloured: own record; grey: other records)",
        ylabel="Euclidean distance over 187 samples",
        title="Distance to the class mean of its own record vs of other records",
    )
    if not summary.empty:
        x = np.arange(len(summary))
        right.bar(
            x - 0.2,
            summary["nearest_is_own"],
            0.4,
            color=[COLORS[n] for n in summary.index],
            label="nearest class mean is its own record's",
        )
        right.bar(x + 0.2, summary["chance"], 0.4, color="lightgrey", label="chance (1 / records)")
        right.set_xticks(x, [f"{n}\n({r} records)" for n, r in zip(summary.index, summary["records"], strict=True)])
    right.set(
        ylim=(0, 1),
        ylabel="share of beats",
        xlabel="AAMI class",
        title="How often a beat is closest to its own patient",
    )
    right.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- the whole analysis

NEIGHBOUR_PAIRS = {  # name -> (protocol, training set, evaluated set)
    "kaggle test": ("kaggle", "train", "test"),
    "interpatient test": ("interpatient", "train", "test"),
    "interpatient holdout": ("interpatient", "train", "holdout"),
}


@dataclass(frozen=True)
class EdaSettings:
    """Sample sizes, thresholds and the seed of the analysis (the ``eda`` params)."""

    seed: int
    examples_per_class: int  # beats per class in the example grid
    pca_per_class: int  # beats per class drawn in the PCA scatter
    neighbour_per_class: int  # evaluated beats per class in the nearest-neighbour check
    auc_max_reference: int  # N beats kept for the single-feature AUCs
    min_record_beats: int  # a record's class mean needs this many beats of the class
    concentration_share: float  # how many records hold this share of a class
    augment_max_ratio: float  # the largest class at most this many times any other
    augment_min_beats: int  # fewer training beats than this: too few to multiply
    premature_ratio: float  # rr_prev / rr_local below this: premature
    flat_std: float  # SD of the unpadded samples below this: flat
    clip_run: int  # consecutive samples at the beat's max or min: clipped
    outlier_z: float  # robust z of the distance to the class mean above this: far

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> EdaSettings:
        """The settings from a params mapping (extra keys ignored, a missing one a KeyError)."""
        casts = {"int": int, "float": float}
        return cls(**{f.name: casts[str(f.type)](params[f.name]) for f in fields(cls)})


@dataclass(frozen=True)
class EdaResult:
    """Everything ``analyse`` finds; ``ecgbeats.analysis.eda_report`` turns it into figures, text and metrics.

    Set-level tables are keyed by ``"<protocol> <set>"`` (and ``"all beats"``); the per-beat arrays
    are those of the whole beat table.
    """

    settings: EdaSettings
    labels: np.ndarray
    records: np.ndarray
    samples: np.ndarray
    lengths: np.ndarray
    leads: pd.Series  # beats per lead
    # classes, records and splits
    summaries: dict[str, dict[str, Any]]
    composition: pd.DataFrame
    groups: dict[str, str]  # record -> DS1, DS2, paced or other
    concentration: pd.DataFrame
    train_concentration: pd.DataFrame  # of the interpatient training set
    overlap: dict[str, float]  # kaggle train -> test
    holdout_overlap: dict[str, float]  # interpatient train -> holdout
    plan: dict[str, float | None]  # augmentation, interpatient train
    kaggle_plan: dict[str, float | None]
    # shape, length, rhythm
    profiles: dict[str, tuple[np.ndarray, np.ndarray]]
    stats: pd.DataFrame
    padding: pd.DataFrame
    pad_share: np.ndarray
    pad_by_class: dict[str, float]
    missing: dict[str, Any]
    rhythm_table: pd.DataFrame
    rhythm_auc: pd.DataFrame
    sample_auc: pd.DataFrame
    auc_reference: int  # N beats the AUCs used
    length_corr: dict[str, float]
    length_hist: pd.DataFrame
    ratio_hist: pd.DataFrame
    # suspicious beats
    flags: pd.DataFrame
    flagged: pd.Series
    suspicious: dict[str, Any]
    far_symbols: pd.Series  # symbols of the far N beats
    n_symbols: pd.Series  # symbols of all N beats
    far_leads: pd.Series
    # structure
    structure: dict[str, np.ndarray]
    lag_corr: np.ndarray
    pca_index: np.ndarray
    pca_scores: np.ndarray
    pca_summary: dict[str, Any]
    # patients
    variability: pd.DataFrame
    per_beat: pd.DataFrame
    nn_classes: list[str]
    neighbours: dict[str, dict[str, Any]]


def record_group(record: str) -> str:
    return "DS1" if record in DS1 else "DS2" if record in DS2 else "paced" if record in PACED else "other"


def _overlap(train: pd.DataFrame, test: pd.DataFrame) -> dict[str, float]:
    return record_overlap(
        train["record"].to_numpy(dtype=object),
        train["label"].to_numpy(),
        test["record"].to_numpy(dtype=object),
        test["label"].to_numpy(),
    )


def analyse(beats: pd.DataFrame, sets: Mapping[str, pd.DataFrame], settings: EdaSettings) -> EdaResult:
    """The whole analysis of the beat table (every beat needs its record) and of the split sets
    (``"<protocol> <set>"`` -> frame with ``record`` and ``label``, and the samples for the sets
    ``NEIGHBOUR_PAIRS`` names)."""
    started = time.perf_counter()
    p = settings
    labels = beats["label"].to_numpy(dtype=np.int64)
    records = beats["record"].to_numpy(dtype=object)
    samples = beats[SAMPLE_COLUMNS].to_numpy(dtype=np.float32)
    lengths = beats["length"].to_numpy(dtype=np.int64)
    log.info("%d beats, %d records; %d sets", len(beats), len(set(records)), len(sets))

    # classes, per protocol and set
    summaries = {"all beats": class_summary(labels, records)}
    summaries |= {
        name: class_summary(f["label"].to_numpy(), f["record"].to_numpy(dtype=object)) for name, f in sets.items()
    }
    composition = record_composition(records, labels)
    itrain = sets["interpatient train"]
    train_composition = record_composition(itrain["record"].to_numpy(dtype=object), itrain["label"].to_numpy())
    train_counts = summaries["interpatient train"]["counts"]
    log.info("classes and records done (%.1f s)", time.perf_counter() - started)

    # shape, length, rhythm
    pad_share = padding_share(lengths)
    pad_by_class = {c: float(pad_share[labels == i].mean()) for i, c in enumerate(CLASS_NAMES) if (labels == i).any()}
    rhythm = rhythm_frame(beats)
    rng = np.random.default_rng(p.seed)
    n_reference = int((labels == 0).sum())
    keep = np.ones(len(labels), dtype=bool)
    if n_reference > p.auc_max_reference:  # subsample N for the rank AUCs: same estimate, faster
        drop = rng.choice(np.flatnonzero(labels == 0), size=n_reference - p.auc_max_reference, replace=False)
        keep[drop] = False
    rhythm_auc, sample_auc = separability(rhythm[keep].reset_index(drop=True), samples[keep], labels[keep])
    length_hist = histogram_by_class(rhythm["length_ms"], labels, np.arange(0, WINDOW_MS + 2 * 25, 25.0), "length_ms")
    ratio_hist = histogram_by_class(
        rhythm["rr_prev/rr_local"], labels, np.arange(0.2, 2.02, 0.04), "rr_prev_over_local"
    )
    log.info("shape and rhythm done (%.1f s)", time.perf_counter() - started)

    # suspicious beats
    flags = suspicious_beats(samples, lengths, labels, flat_std=p.flat_std, clip_run=p.clip_run, outlier_z=p.outlier_z)
    flagged = flags[["flat", "clipped", "far"]].any(axis=1)
    far = flags["far"].to_numpy()
    far_records = pd.Series(records[far]).value_counts()
    far_cum = far_records.cumsum().to_numpy() / max(int(far_records.sum()), 1)
    far_top_n = int(np.searchsorted(far_cum, 0.5 - 1e-12) + 1) if len(far_records) else 0  # holding half
    far_n = far & (labels == 0)
    far_symbols = beats["symbol"][far_n].value_counts()
    log.info("suspicious beats done (%.1f s)", time.perf_counter() - started)

    # structure
    structure = covariance_structure(samples)
    pca_index = per_class_sample(labels, p.pca_per_class, p.seed)
    all_scores = (samples - structure["mean"]) @ structure["components"][:2].T
    pc_auc = {}
    for i, c in enumerate(CLASS_NAMES[1:], start=1):
        pair = ((labels == i) | (labels == 0)) & keep
        aucs = auc_columns(all_scores[pair], labels[pair] == i)
        if np.isfinite(aucs).all():
            pc_auc[c] = float(aucs[np.argmax(np.abs(aucs - 0.5))])
    lag_corr = lag_correlation(structure["corr"])

    # patients
    variability, per_beat = patient_variability(samples, records, labels, p.min_record_beats)
    # the balanced accuracy averages the classes every evaluated set holds enough of
    nn_classes = [
        c
        for i, c in enumerate(CLASS_NAMES)
        if all((sets[f"{pr} {ts}"]["label"] == i).sum() >= p.min_record_beats for pr, _, ts in NEIGHBOUR_PAIRS.values())
    ]
    neighbours = {}
    for name, (protocol, train_set, test_set) in NEIGHBOUR_PAIRS.items():
        train, test = sets[f"{protocol} {train_set}"], sets[f"{protocol} {test_set}"]
        neighbours[name] = neighbour_check(
            train[SAMPLE_COLUMNS].to_numpy(dtype=np.float32),
            train["label"].to_numpy(dtype=np.int64),
            train["record"].to_numpy(dtype=object),
            test[SAMPLE_COLUMNS].to_numpy(dtype=np.float32),
            test["label"].to_numpy(dtype=np.int64),
            test["record"].to_numpy(dtype=object),
            per_class=p.neighbour_per_class,
            seed=p.seed,
            classes=nn_classes,
        )
    log.info("structure and patients done (%.1f s)", time.perf_counter() - started)

    max_ratio, min_beats = p.augment_max_ratio, p.augment_min_beats
    return EdaResult(
        settings=p,
        labels=labels,
        records=records,
        samples=samples,
        lengths=lengths,
        leads=beats["lead"].value_counts(),
        summaries=summaries,
        composition=composition,
        groups={r: record_group(r) for r in composition.index},
        concentration=class_concentration(composition, p.concentration_share),
        train_concentration=class_concentration(train_composition, p.concentration_share),
        overlap=_overlap(sets["kaggle train"], sets["kaggle test"]),
        holdout_overlap=_overlap(itrain, sets["interpatient holdout"]),
        plan=growth_factors(train_counts, max_ratio, min_beats),
        kaggle_plan=growth_factors(summaries["kaggle train"]["counts"], max_ratio, min_beats),
        profiles=class_profiles(samples, labels),
        stats=position_stats(samples),
        padding=padding_by_position(lengths, labels),
        pad_share=pad_share,
        pad_by_class=pad_by_class,
        missing={
            "sample_nan": int(np.isnan(samples).sum()),
            "padding": float(pad_share.mean()),
            "padding_min_class": min(pad_by_class.items(), key=lambda kv: kv[1]),
            "padding_max_class": max(pad_by_class.items(), key=lambda kv: kv[1]),
            "cut": int((lengths > BEAT_SAMPLES).sum()),
            "cut_share": float((lengths > BEAT_SAMPLES).mean()),
            "rr_prev_nan": int(beats["rr_prev"].isna().sum()),
        },
        rhythm_table=rhythm_summary(rhythm, labels, p.premature_ratio),
        rhythm_auc=rhythm_auc,
        sample_auc=sample_auc,
        auc_reference=min(n_reference, p.auc_max_reference),
        length_corr={
            col: float(rhythm[["length_ms", col]].dropna().corr().iloc[0, 1])
            for col in ("rr_prev", "rr_next", "rr_local")
        },
        length_hist=length_hist,
        ratio_hist=ratio_hist,
        flags=flags,
        flagged=flagged,
        suspicious={
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
        far_symbols=far_symbols,
        n_symbols=beats["symbol"][labels == 0].value_counts(),
        far_leads=beats["lead"][far].value_counts(),
        structure=structure,
        lag_corr=lag_corr,
        pca_index=pca_index,
        pca_scores=(samples[pca_index] - structure["mean"]) @ structure["components"][:2].T,
        pca_summary={
            "two": float(structure["explained"][:2].sum()),
            "n95": components_for(structure["explained"], 0.95),
            "n99": components_for(structure["explained"], 0.99),
            "lag1": float(lag_corr[1]),
            "lag12": float(lag_corr[int(round(0.1 * BEAT_FS))]),
            "pc_auc": pc_auc,
        },
        variability=variability,
        per_beat=per_beat,
        nn_classes=nn_classes,
        neighbours=neighbours,
    )
