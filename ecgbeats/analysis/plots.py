"""Figures for people: learning curves, confusion matrices, ROC/PR, reliability, error examples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_curve

from ecgbeats.data.aami import CLASS_NAMES
from ecgbeats.data.beats import BEAT_FS, BEAT_SAMPLES
from ecgbeats.io import atomic_path


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] | None = None, **kwargs: Any):  # noqa: ANN201
    """``pyplot.subplots`` without pyplot: a figure that no global state or GUI backend holds."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)


COLORS = dict(zip(CLASS_NAMES, ["#4c72b0", "#dd8452", "#c44e52", "#8172b3", "#55a868"], strict=True))


def save(fig: Figure, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def learning_curves(history: dict[str, dict[str, list[float]]], best_iteration: int, title: str) -> Figure:
    fig, axes = subplots(1, 2, figsize=(11, 4))
    for ax, metric, label in zip(
        axes, ["multi_logloss", "macro_f1"], ["multi-class log loss", "macro-F1"], strict=True
    ):
        for name, style in (("train", "-"), ("val", "--")):
            values = history.get(name, {}).get(metric)
            if values:
                ax.plot(np.arange(1, len(values) + 1), values, style, label=name)
        ax.axvline(best_iteration, color="grey", lw=0.8, label=f"best iteration {best_iteration}")
        ax.set(xlabel="boosting iteration", ylabel=label, title=f"{title}: {label}")
        ax.legend()
    fig.tight_layout()
    return fig


def confusion_figure(y_true: np.ndarray, y_pred: np.ndarray, title: str) -> Figure:
    cm = confusion_matrix(y_true, y_pred, labels=range(len(CLASS_NAMES)))
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.nan_to_num(cm / cm.sum(axis=1, keepdims=True))
    fig, axes = subplots(1, 2, figsize=(11, 4.5))
    for ax, matrix, label, fmt in ((axes[0], cm, "beats", "d"), (axes[1], norm, "share of true class", ".3f")):
        image = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(j, i, format(value, fmt), ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black")
        ax.set(
            xticks=range(len(CLASS_NAMES)),
            yticks=range(len(CLASS_NAMES)),
            xticklabels=CLASS_NAMES,
            yticklabels=CLASS_NAMES,
            xlabel="predicted class",
            ylabel="true class",
            title=f"{title}: {label}",
        )
    fig.colorbar(image, ax=axes, shrink=0.8, label="share of true class")
    return fig


def roc_pr_figure(y_true: np.ndarray, proba: np.ndarray, title: str) -> Figure:
    fig, (roc_ax, pr_ax) = subplots(1, 2, figsize=(11, 4.5))
    for i, name in enumerate(CLASS_NAMES):
        positive = y_true == i
        if not 0 < positive.sum() < len(y_true):
            continue
        fpr, tpr, _ = roc_curve(positive, proba[:, i])
        precision, recall, _ = precision_recall_curve(positive, proba[:, i])
        roc_ax.plot(fpr, tpr, color=COLORS[name], label=name)
        pr_ax.plot(recall, precision, color=COLORS[name], label=f"{name} (prevalence {positive.mean():.3f})")
    roc_ax.plot([0, 1], [0, 1], ":", color="grey")
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate (Se)", title=f"{title}: ROC, one vs rest")
    pr_ax.set(xlabel="recall (Se)", ylabel="precision (+P)", title=f"{title}: precision-recall")
    roc_ax.legend()
    pr_ax.legend()
    fig.tight_layout()
    return fig


def reliability_figure(curve: list[dict[str, float]], ece: float, title: str) -> Figure:
    fig, ax = subplots(figsize=(5, 4.5))
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    ax.plot([r["confidence"] for r in curve], [r["accuracy"] for r in curve], "o-", label=f"model (ECE {ece:.4f})")
    ax.set(xlabel="confidence of the predicted class", ylabel="accuracy", title=f"{title}: reliability")
    ax.legend()
    return fig


def error_examples_figure(
    samples: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    class_means: np.ndarray,
    pairs: list[dict[str, Any]],
    title: str,
    per_pair: int = 4,
    seed: int = 0,
    time_ms: np.ndarray | None = None,
    ylabel: str = "scaled amplitude",
) -> Figure:
    """Misclassified beats (thin lines) beside the average beat of their true and predicted class.

    ``time_ms``: each sample's time from the R peak (default: the Kaggle beat rows at 120 Hz).
    """
    pairs = pairs[:4]
    fig, axes = subplots(1, max(len(pairs), 1), figsize=(4.2 * max(len(pairs), 1), 3.6), squeeze=False)
    t = np.arange(BEAT_SAMPLES) / BEAT_FS * 1000 if time_ms is None else time_ms
    rng = np.random.default_rng(seed)
    for ax, pair in zip(axes[0], pairs, strict=False):
        i, j = CLASS_NAMES.index(pair["true"]), CLASS_NAMES.index(pair["predicted"])
        index = np.flatnonzero((y_true == i) & (y_pred == j))
        for k in rng.choice(index, size=min(per_pair, len(index)), replace=False):
            ax.plot(t, samples[k], color="black", lw=0.6, alpha=0.6)
        ax.plot(t, class_means[i], color=COLORS[pair["true"]], lw=2.2, label=f"mean {pair['true']} (true)")
        ax.plot(t, class_means[j], color=COLORS[pair["predicted"]], lw=2.2, ls="--", label=f"mean {pair['predicted']}")
        ax.set(
            xlabel="time from R peak (ms)",
            ylabel=ylabel,
            title=f"{pair['true']} predicted as {pair['predicted']} ({pair['count']} beats)",
        )
        ax.legend(fontsize=8)
    if not pairs:
        axes[0][0].text(0.5, 0.5, "no misclassified beats", ha="center")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
