"""Exploratory analysis of the beat table: pure functions returning tables, numbers and figures.

Nothing here reads files or params: the ``eda`` stage passes arrays and plain values in and writes
what comes out. Distances are Euclidean over the 187 scaled samples (padding included: it is what
every model sees). Times are in ms from the R peak at the rows' true rate, ``BEAT_FS`` = 120 Hz.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.stats import rankdata, skew  # noqa: E402

from ecgbeats.aami import CLASS_DESCRIPTIONS, CLASS_NAMES  # noqa: E402
from ecgbeats.beats import BEAT_FS, BEAT_SAMPLES  # noqa: E402
from ecgbeats.plots import COLORS  # noqa: E402
from ecgbeats.reporting import fmt  # noqa: E402

log = logging.getLogger(__name__)

MS_PER_SAMPLE = 1000.0 / BEAT_FS
TIME_MS = np.arange(BEAT_SAMPLES) * MS_PER_SAMPLE
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


def augmentation_plan(counts: Mapping[str, int], max_ratio: float, min_beats: int = 1) -> dict[str, float | None]:
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


def stratified_sample(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Sorted indices of up to ``per_class`` random beats of every class (seeded)."""
    rng = np.random.default_rng(seed)
    picked = []
    for i in range(len(CLASS_NAMES)):
        index = np.flatnonzero(labels == i)
        picked.append(rng.choice(index, size=min(per_class, len(index)), replace=False))
    return np.sort(np.concatenate(picked)).astype(np.int64)


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
    index = stratified_sample(test_y, per_class, seed)
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


def _time_axis(ax: plt.Axes, ylabel: str = "scaled amplitude") -> None:
    ax.set_xlabel("time from R peak (ms)")
    ax.set_ylabel(ylabel)


def class_distribution_figure(summaries: Mapping[str, Mapping[str, Any]]) -> plt.Figure:
    """Beats per class over all data (left) and class shares per protocol and set (right, log)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.6), gridspec_kw={"width_ratios": [1, 2]})
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


def record_composition_figure(composition: pd.DataFrame, groups: Mapping[str, str]) -> plt.Figure:
    """Heat map: the share of each class's beats held by each record, with the beat counts."""
    order = sorted(composition.index, key=lambda r: ({"DS1": 0, "DS2": 1}.get(groups.get(r, ""), 2), r))
    comp = composition.loc[order]
    share = comp / comp.sum(axis=0).replace(0, np.nan)
    fig, ax = plt.subplots(figsize=(7.5, max(3.0, 0.24 * len(comp) + 1.5)))
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


def class_mean_figure(profiles: Mapping[str, tuple[np.ndarray, np.ndarray]], counts: Mapping[str, int]) -> plt.Figure:
    """Mean beat and a ±1 standard deviation band per class."""
    fig, axes = plt.subplots(1, len(CLASS_NAMES), figsize=(17, 3.6), sharey=True)
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
) -> plt.Figure:
    """A grid of random beats: one row per class, unpadded part solid, padding dotted."""
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(
        len(CLASS_NAMES),
        per_class,
        figsize=(2.1 * per_class, 1.7 * len(CLASS_NAMES)),
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    for row, name in enumerate(CLASS_NAMES):
        index = np.flatnonzero(labels == row)
        chosen = rng.choice(index, size=min(per_class, len(index)), replace=False) if len(index) else []
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


def rhythm_figure(length_hist: pd.DataFrame, ratio_hist: pd.DataFrame, premature_ratio: float) -> plt.Figure:
    """Distributions per class of the unpadded length and of rr_prev / rr_local."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.2))
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


def position_figure(stats: pd.DataFrame, padding: pd.DataFrame) -> plt.Figure:
    """Mean ± SD and skewness per position over all beats, and the padded share per class."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
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
) -> plt.Figure:
    """Counts of flagged beats per class, and examples of each kind."""
    kinds = {"flat": "flat (lead off?)", "clipped": "clipped (plateau at max/min)", "far": "far from class mean"}
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
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
            chosen = [
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


def pca_figure(scores: np.ndarray, labels: np.ndarray, structure: Mapping[str, np.ndarray]) -> plt.Figure:
    """Beats on the first two principal axes, coloured by class, and the axes' loadings over time."""
    explained = structure["explained"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [1.2, 1]})
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


def correlation_figure(corr: np.ndarray, lag_corr: np.ndarray) -> plt.Figure:
    """Correlation between sample positions, and the mean correlation against the lag."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [1.1, 1]})
    end = TIME_MS[-1]
    image = left.imshow(np.nan_to_num(corr), cmap="RdBu_r", vmin=-1, vmax=1, extent=(0, end, end, 0))
    left.set(xlabel="time from R peak (ms)", ylabel="time from R peak (ms)", title="Correlation between positions")
    fig.colorbar(image, ax=left, shrink=0.8, label="Pearson r")
    right.plot(np.arange(len(lag_corr)) * MS_PER_SAMPLE, lag_corr, color="black")
    right.axhline(0, color="grey", lw=0.8)
    right.set(xlabel="lag between positions (ms)", ylabel="mean Pearson r", title="Mean correlation against lag")
    fig.tight_layout()
    return fig


def variability_figure(per_beat: pd.DataFrame, summary: pd.DataFrame) -> plt.Figure:
    """Distance of beats to their own record's class mean versus other records' class means."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.4))
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


# ---------------------------------------------------------------- conclusions


def _pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{100 * value:.{digits}f} %"


def _join(items: Sequence[str]) -> str:
    items = list(items)
    if not items:
        return "none"
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _separation(auc: float, name: str) -> str:
    """An AUC as a separation either way, with the direction: "0.932, lower in S"."""
    return f"{max(auc, 1 - auc):.3f}, {'lower' if auc < 0.5 else 'higher'} in {name}"


def conclusions(s: Mapping[str, Any]) -> list[str]:
    """The numbered conclusions later stages use, written from the summary the stage computed.

    ``s`` holds: ``plan`` (class -> factor or None, interpatient train), ``max_ratio``,
    ``min_beats``, ``train_counts``, ``train_concentration`` (DataFrame), ``missing`` (dict),
    ``rhythm_auc`` and ``sample_auc`` (from ``separability``), ``length_corr`` (dict), ``pca``
    (dict, with ``pc_auc``: class -> AUC of the better of PC1 and PC2), ``flags`` (dict),
    ``records`` (int), ``variability`` (DataFrame), ``overlap`` (dict), ``neighbours`` (dict of
    name -> dict), ``neighbour_classes`` (list), ``shift`` (dict).
    """
    out = []
    plan, conc, counts = s["plan"], s["train_concentration"], s["train_counts"]
    needy = [c for c, f in plan.items() if f is not None and f > 1]
    too_few = [c for c, f in plan.items() if f is None]
    parts = [
        f"{c} ×{plan[c]:.1f} ({counts[c]:,} beats from {conc.loc[c, 'records']} records, "
        f"{_pct(conc.loc[c, 'top_share'], 0)} of them in record {conc.loc[c, 'top_record']})"
        for c in needy
    ]
    text = (
        f"**Augmentation.** In the inter-patient training set the largest class outnumbers {_join(needy)} more "
        f"than {s['max_ratio']:g} to 1; reaching {s['max_ratio']:g} : 1 needs {_join(parts)}."
        if needy
        else f"**Augmentation.** No class of the inter-patient training set is outnumbered more than "
        f"{s['max_ratio']:g} to 1."
    )
    if too_few:
        text += (
            f" {_join([f'{c} ({counts[c]:,} beats)' for c in too_few])} "
            f"{'has' if len(too_few) == 1 else 'have'} fewer than {s['min_beats']:,} training beats: too few "
            "to multiply; leave such a class out of the inter-patient model or merge it, and say so in its metrics."
        )
    text += (
        " Synthetic copies (time warping within the RR window, amplitude scaling, baseline wander, noise) "
        "multiply the shapes of the few patients who hold a class: combine modest augmentation with class "
        "weights and judge it on unseen patients only."
    )
    out.append(text)

    m = s["missing"]
    out.append(
        f"**Missing data.** {m['sample_nan']:,} sample values are NaN; missingness here is structural: "
        f"{_pct(m['padding'])} of all "
        f"sample values are zero padding (per class on average from {_pct(m['padding_min_class'][1])} for "
        f"{m['padding_min_class'][0]} to {_pct(m['padding_max_class'][1])} for {m['padding_max_class'][0]}), "
        "so zeros after the beat's end are not signal; "
        f"{m['cut']:,} beats ({_pct(m['cut_share'], 2)}) are longer than 187 samples and lose their end; "
        f"`rr_prev` is missing for {m['rr_prev_nan']:,} beats (each record's first) and all RR values are "
        "missing with the Kaggle CSV source, so models must accept NaN RR features (LightGBM does) "
        "rather than impute them from the padding."
    )

    ra, sa = s["rhythm_auc"], s["sample_auc"]
    lines, rhythm_first, shape_first = [], [], []
    for c in ra.columns:
        best = (ra[c] - 0.5).abs().idxmax()
        position = (sa[c] - 0.5).abs().idxmax()
        lines.append(
            f"{c}: `{best}` (AUC {_separation(ra.loc[best, c], c)}) against the best single sample, at "
            f"{position:.0f} ms (AUC {_separation(sa.loc[position, c], c)})"
        )
        (rhythm_first if abs(ra.loc[best, c] - 0.5) > abs(sa.loc[position, c] - 0.5) else shape_first).append(c)
    lc = s["length_corr"]
    out.append(
        "**Features likely to matter.** The best single rhythm value against N: "
        + "; ".join(lines)
        + f". A rhythm value beats every single sample for {_join(rhythm_first)}; the shape wins for "
        f"{_join(shape_first)}. The unpadded length follows the *next* RR interval (r = {lc['rr_next']:.3f}), "
        f"not the previous one (r = {lc['rr_prev']:.3f}): the window starts at the R peak, so neither the P "
        "wave nor the prematurity of the beat is in the 187 samples. Give models `rr_prev`, `rr_local` and "
        "their ratio explicitly."
    )

    p = s["pca"]
    out.append(
        f"**Redundancy.** Neighbouring positions correlate at r = {p['lag1']:.3f} (one sample, 8.3 ms, apart) "
        f"and {p['lag12']:.3f} at 100 ms; {p['n95']} principal components hold 95 % of the variance and the "
        f"first two {_pct(p['two'])}."
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

    f = s["flags"]
    few = 0 < f["far_top_n"] <= max(2, 0.1 * s["records"])
    out.append(
        f"**Outliers.** {f['flat']:,} flat, {f['clipped']:,} clipped and {f['far']:,} far-from-mean beats "
        f"({_pct(f['any_share'], 2)} of all). Half of the far beats come from {f['far_top_n']} of "
        f"{s['records']} records ({f['far_top_records']})"
        + (
            ": concentrated in a few patients, they are more likely patient-specific morphologies than "
            "recording errors. Keep them in training; flag them in monitoring instead of dropping them."
            if few
            else ": spread over many patients, they deserve a look before training; flag rather than drop them."
        )
    )

    v, o, nn = s["variability"], s["overlap"], s["neighbours"]
    if not v.empty:
        vtext = "; ".join(
            f"{c}: {v.loc[c, 'ratio']:.2f}× farther, nearest to its own record's mean for "
            f"{_pct(v.loc[c, 'nearest_is_own'], 0)} of beats (chance {_pct(v.loc[c, 'chance'], 0)})"
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
        + f"({vtext}). The random split puts {_pct(o['same_record'])} of "
        f"test beats next to training beats of the same patient ({_pct(o['same_record_and_class'])} of the "
        "same patient and class), and the nearest training beat of a kaggle test beat is from the same "
        f"patient {_pct(k.get('same_record'))} of the time. A plain 1-nearest-neighbour on the raw samples "
        f"reaches a balanced accuracy over {_join(s['neighbour_classes'])} of {fmt(k_bacc)} on the kaggle test "
        f"set and {fmt(h_bacc)} on the DS2 holdout"
        + (": the difference is patients seen in training, not skill." if gap else ".")
        + " Report the inter-patient holdout as the headline and select models "
        "on whole held-out records."
    )

    sh = s["shift"]
    out.append(
        "**Label shift between DS1 and DS2.** Class shares of the inter-patient training set against the "
        "holdout: "
        + ", ".join(f"{c} {_pct(sh['train'][c], 2)} vs {_pct(sh['holdout'][c], 2)}" for c in CLASS_NAMES[1:])
        + f"; record {sh['s_top_record']} ({sh['s_top_group']}) alone holds {_pct(sh['s_top_share'], 0)} of all "
        "S beats. Per-class precision on the holdout moves with these priors; the holdout-shift report "
        "should compare against them."
    )
    return out
