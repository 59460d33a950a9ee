"""Distribution drift between a reference set of beats (the training split) and any later batch.

Pure functions on beat tables or model-feature frames; nothing here reads files or knows about the
service. The pieces:

- :func:`key_features`: a handful of per-beat values the EDA found informative (``rr_prev/rr_local``,
  ``rr_prev``, ``length``, mean and SD of the unpadded samples, the samples at 25 ms and 292 ms).
  They are computed from the columns a beat table and the model's feature frame share
  (``s000..s186``, ``length``, ``rr_prev``, ``rr_local``), so the training stage, the ``drift`` CLI and
  the service's sliding window all compute them the same way. A value whose inputs are absent
  (e.g. no RR group) is left out.
- :func:`build_profile`: the reference profile saved in the model bundle (``reference.json``): per key
  feature the decile bin edges, the reference share of each bin (plus a ``missing`` bin) and 101
  quantiles (for a KS distance); and the predicted class mix.
- :func:`psi`, :func:`ks_from_quantiles`, :func:`class_mix_drift`, :func:`compare`: the statistics,
  and a report that flags drift with the usual population-stability rule of thumb
  (PSI < 0.1 stable, 0.1-0.25 moderate, >= 0.25 major).

PSI (population stability index) over ``k`` bins with reference shares ``e`` and current shares ``a``
is ``sum((a - e) * ln(a / e))``; shares are floored at ``EPSILON`` so an empty bin does not give an
infinite value. Under no drift its expected value is roughly ``(k - 1) * (1/n_ref + 1/n_cur)``
per feature, so small windows (a few hundred beats) carry a noise floor of a few hundredths: the
service only reports a window once it holds ``min_beats`` beats.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

PROFILE_VERSION = 1
SAMPLE_RATE_HZ = 120.0  # the Kaggle beat format
BEAT_SAMPLES = 187
EPSILON = 1e-4  # floor of a bin share in PSI
N_BINS = 10  # deciles of the reference
N_QUANTILES = 101  # reference quantiles kept for the KS distance (every percentile)
PSI_MODERATE = 0.1
PSI_MAJOR = 0.25
MISSING = "missing"

# position (ms after the R peak) -> key feature name; EDA: 25 ms separates V and Q from N best,
# 292 ms separates S (reports/eda.md, "class vs N: best sample position")
SAMPLE_POSITIONS_MS = {"s_25ms": 25.0, "s_292ms": 292.0}
KEY_FEATURES: dict[str, str] = {
    "rr_prev_ratio": "rr_prev / rr_local: prematurity, the strongest cue for S and V beats",
    "rr_prev": "seconds from the previous R peak",
    "length": "samples before the zero padding (follows the next RR interval)",
    "unpadded_mean": "mean of the scaled samples before the padding",
    "unpadded_std": "SD of the scaled samples before the padding (flat or noisy beats)",
    "s_25ms": "scaled sample 25 ms after the R peak (V and Q against N)",
    "s_292ms": "scaled sample 292 ms after the R peak (S against N)",
}

# a record bundle's key features: its own measures, relative to the patient's sinus reference
# (ecgbeats.features.reference), so a new patient's drift is not just "another patient"
RECORD_KEY_FEATURES: dict[str, str] = {
    "rr_prev": "seconds from the previous R peak",
    "rr_prev_ref": "RR before over the patient's sinus reference RR: prematurity, the cue for S and V beats",
    "ref_qrs_corr": "QRS correlation with the patient's sinus reference beat (V, F and aberrant beats fall)",
    "ref_ptp_ratio": "QRS peak-to-peak over the reference's (a lead change or a gain error moves it)",
    "p_wave": "P-wave height over the QRS peak-to-peak (atrial fibrillation and ectopic beats lower it)",
    "ctx_irregularity": "irregularity of the preceding RR intervals (atrial fibrillation raises it)",
}

DESCRIPTIONS = {**KEY_FEATURES, **RECORD_KEY_FEATURES}  # every key feature a profile may hold


def key_feature_values(
    samples: np.ndarray | None = None,
    length: np.ndarray | None = None,
    rr_prev: np.ndarray | None = None,
    rr_local: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The key features from plain arrays (``samples``: (n, 187)); a feature whose inputs are None is
    left out. The array-level core of :func:`key_features`, cheap enough for every API request."""
    out: dict[str, np.ndarray] = {}
    if rr_prev is not None and rr_local is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.asarray(rr_prev, dtype=np.float64) / np.asarray(rr_local, dtype=np.float64)
        out["rr_prev_ratio"] = np.where(np.isfinite(ratio), ratio, np.nan)
    if rr_prev is not None:
        out["rr_prev"] = np.asarray(rr_prev, dtype=np.float64)
    if length is not None:
        out["length"] = np.asarray(length, dtype=np.float64)
    if samples is not None:
        samples = np.asarray(samples, dtype=np.float64)
        n = len(samples)
        full = np.full(n, float(BEAT_SAMPLES))
        used = np.clip(full if length is None else np.nan_to_num(np.asarray(length, np.float64), nan=BEAT_SAMPLES),
                       1, BEAT_SAMPLES).astype(np.int64)  # fmt: skip
        mask = np.arange(BEAT_SAMPLES)[None, :] < used[:, None]
        mean = np.where(mask, samples, 0.0).sum(axis=1) / used
        var = np.where(mask, (samples - mean[:, None]) ** 2, 0.0).sum(axis=1) / used
        out["unpadded_mean"] = mean
        out["unpadded_std"] = np.sqrt(var)
        for name, ms in SAMPLE_POSITIONS_MS.items():
            out[name] = samples[:, sample_index(ms)]
    return out


def sample_index(ms: float) -> int:
    """The sample (0-based, at 120 Hz from the R peak) nearest ``ms`` milliseconds after the R peak."""
    return int(round(ms * SAMPLE_RATE_HZ / 1000.0))


def key_features(frame: pd.DataFrame) -> pd.DataFrame:
    """The key drift features of each beat (row) of a beat table or a model-feature frame.

    Missing inputs give NaN (e.g. a beat sent without RR intervals); a feature whose columns are not
    in ``frame`` at all is not returned.
    """
    cols = set(frame.columns)
    if "rr_prev_ref" in cols:  # a record model's table: its measures are the key features
        return pd.DataFrame(
            {name: frame[name].to_numpy(dtype=np.float64, na_value=np.nan) for name in RECORD_KEY_FEATURES
             if name in cols},
            index=range(len(frame)),
        )  # fmt: skip

    def column(name: str) -> np.ndarray | None:
        return frame[name].to_numpy(dtype=np.float64, na_value=np.nan) if name in cols else None

    sample_cols = [f"s{i:03d}" for i in range(BEAT_SAMPLES)]
    samples = frame[sample_cols].to_numpy(dtype=np.float64, na_value=np.nan) if set(sample_cols) <= cols else None
    values = key_feature_values(samples, column("length"), column("rr_prev"), column("rr_local"))
    return pd.DataFrame(values, index=range(len(frame)))


# ---------------------------------------------------------------- one feature


def bin_edges(values: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """Inner bin edges at the reference quantiles (duplicates from ties removed)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return np.array([], dtype=np.float64)
    inner = np.quantile(values, np.linspace(0, 1, n_bins + 1)[1:-1])
    return np.unique(inner)


def bin_shares(values: np.ndarray, edges: Sequence[float] | np.ndarray) -> np.ndarray:
    """Shares of ``values`` in the bins ``(-inf, e0], (e0, e1], ..., (e_last, inf)`` and a last missing bin."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n == 0:
        return np.zeros(len(edges) + 2)
    finite = np.isfinite(values)
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), values[finite], side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(np.float64)
    return np.append(counts, n - finite.sum()) / n


def psi(
    expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray, epsilon: float = EPSILON
) -> float:
    """Population stability index of two share vectors over the same bins (0 = identical)."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), epsilon)
    a = np.maximum(np.asarray(actual, dtype=np.float64), epsilon)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def ks_from_quantiles(ref_quantiles: Sequence[float], values: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov distance between ``values`` and a reference given by its quantiles.

    The reference CDF is the piecewise-linear interpolation of ``ref_quantiles`` (at equally spaced
    probabilities); missing values are ignored (their share is in the PSI's missing bin).
    """
    q = np.asarray(ref_quantiles, dtype=np.float64)
    x = np.sort(np.asarray(values, dtype=np.float64))
    x = x[np.isfinite(x)]
    if len(x) == 0 or len(q) < 2:
        return float("nan")
    probs = np.linspace(0, 1, len(q))
    # both CDFs at and just below every point where either jumps; ties (a discrete feature, or many
    # beats at exactly 0 or 1) make them jump, so "at" and "below" differ there
    q_unique, first = np.unique(q, return_index=True)
    last = len(q) - 1 - np.unique(q[::-1], return_index=True)[1]
    p_first, p_last = probs[first], probs[last]  # the CDF jumps from p_first to p_last at a tied value
    points = np.union1d(x, q_unique)
    i = np.searchsorted(q_unique, points, side="right")  # q_unique[i-1] <= point < q_unique[i]
    lo = np.clip(i - 1, 0, len(q_unique) - 1)
    hi = np.clip(i, 0, len(q_unique) - 1)
    span = np.where(q_unique[hi] > q_unique[lo], q_unique[hi] - q_unique[lo], 1.0)
    between = p_last[lo] + (points - q_unique[lo]) / span * (p_first[hi] - p_last[lo])
    on_value = (i > 0) & (q_unique[lo] == points)
    ref_at = np.where(i == 0, 0.0, np.where(i == len(q_unique), 1.0, between))
    ref_below = ref_at.copy()
    ref_at[on_value] = p_last[lo[on_value]]
    ref_below[on_value] = p_first[lo[on_value]]
    cur_at = np.searchsorted(x, points, side="right") / len(x)
    cur_below = np.searchsorted(x, points, side="left") / len(x)
    return float(max(np.max(np.abs(cur_at - ref_at)), np.max(np.abs(cur_below - ref_below))))


# ---------------------------------------------------------------- the profile


def feature_profile(values: np.ndarray, n_bins: int = N_BINS) -> dict[str, Any]:
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    edges = bin_edges(finite, n_bins)
    quantiles = np.quantile(finite, np.linspace(0, 1, N_QUANTILES)) if len(finite) else np.array([])
    return {
        "edges": [float(v) for v in edges],
        "shares": [round(float(v), 8) for v in bin_shares(values, edges)],
        "quantiles": [float(v) for v in quantiles],
        "missing_share": round(float(1 - len(finite) / len(values)), 8) if len(values) else 0.0,
    }


def class_shares(predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Shares of each predicted class code (0..n_classes-1)."""
    predicted = np.asarray(predicted, dtype=np.int64)
    if len(predicted) == 0:
        return np.zeros(n_classes)
    return np.bincount(predicted, minlength=n_classes)[:n_classes] / len(predicted)


def build_profile(
    frame: pd.DataFrame,
    predicted: np.ndarray,
    class_names: Sequence[str],
    *,
    source: str = "train",
    n_bins: int = N_BINS,
) -> dict[str, Any]:
    """The reference profile of ``frame`` (beat table or model features) and its predicted classes.

    JSON-serialisable; deterministic (no timestamp), so an unchanged training set gives an unchanged
    bundle.
    """
    keys = key_features(frame)
    return {
        "profile_version": PROFILE_VERSION,
        "source": source,
        "n_beats": int(len(frame)),
        "n_bins": n_bins,
        "thresholds": {"psi_moderate": PSI_MODERATE, "psi_major": PSI_MAJOR},
        "features": {name: {"description": DESCRIPTIONS[name], **feature_profile(keys[name], n_bins)} for name in keys},
        "class_mix": {
            "class_names": list(class_names),
            "shares": [round(float(v), 8) for v in class_shares(predicted, len(class_names))],
        },
    }


# ---------------------------------------------------------------- comparing with it


def class_mix_drift(reference_shares: Sequence[float], predicted: np.ndarray) -> dict[str, Any]:
    """PSI and a chi-square goodness-of-fit test of the predicted class counts against the reference mix."""
    from scipy.stats import chisquare

    ref = np.asarray(reference_shares, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.int64)
    shares = class_shares(predicted, len(ref))
    n = len(predicted)
    expected = np.maximum(ref, EPSILON)
    expected = expected / expected.sum() * n
    counts = np.bincount(predicted, minlength=len(ref))[: len(ref)].astype(np.float64)
    if n:
        chi2, p_value = chisquare(counts, expected)
    else:
        chi2, p_value = float("nan"), float("nan")
    return {
        "psi": psi(ref, shares) if n else float("nan"),
        "chi2": float(chi2),
        "chi2_p_value": float(p_value),
        "shares": [float(v) for v in shares],
        "reference_shares": [float(v) for v in ref],
    }


def level(value: float, moderate: float = PSI_MODERATE, major: float = PSI_MAJOR) -> str:
    """``stable``, ``moderate`` or ``major`` for a PSI value (``unknown`` for NaN)."""
    if not np.isfinite(value):
        return "unknown"
    return "major" if value >= major else "moderate" if value >= moderate else "stable"


@dataclass(frozen=True)
class DriftScores:
    """Per key feature PSI and KS, and the class-mix PSI, of one batch against a profile."""

    n_beats: int
    psi: dict[str, float]
    ks: dict[str, float]
    class_mix: dict[str, Any]

    def worst(self) -> tuple[str, float]:
        scores = {**self.psi, "class_mix": self.class_mix.get("psi", float("nan"))}
        scores = {k: v for k, v in scores.items() if np.isfinite(v)}
        if not scores:
            return "", float("nan")
        name = max(scores, key=scores.get)  # type: ignore[arg-type]
        return name, scores[name]


def score(profile: Mapping[str, Any], keys: pd.DataFrame, predicted: np.ndarray) -> DriftScores:
    """Drift statistics of key-feature values (:func:`key_features`) and predicted class codes."""
    psis: dict[str, float] = {}
    kss: dict[str, float] = {}
    for name, ref in profile["features"].items():
        if name not in keys:
            continue
        values = keys[name].to_numpy(dtype=np.float64)
        psis[name] = psi(ref["shares"], bin_shares(values, ref["edges"]))
        kss[name] = ks_from_quantiles(ref["quantiles"], values)
    mix = class_mix_drift(profile["class_mix"]["shares"], predicted)
    return DriftScores(n_beats=len(keys), psi=psis, ks=kss, class_mix=mix)


def compare(
    profile: Mapping[str, Any],
    frame: pd.DataFrame,
    predicted: np.ndarray,
    *,
    moderate: float | None = None,
    major: float | None = None,
) -> dict[str, Any]:
    """A JSON report of ``frame`` and its predicted classes against ``profile``.

    ``frame`` is a beat table, a model-feature frame (a record model's too), or already the output of
    :func:`key_features` (every column a key feature name), which is used as is.

    ``drift`` is true when any key feature or the class mix reaches the major PSI threshold
    (default: the profile's, else 0.25); every feature also gets its level.
    """
    thresholds = profile.get("thresholds", {})
    moderate = float(moderate if moderate is not None else thresholds.get("psi_moderate", PSI_MODERATE))
    major = float(major if major is not None else thresholds.get("psi_major", PSI_MAJOR))
    keys = frame if len(frame.columns) and set(frame.columns) <= set(DESCRIPTIONS) else key_features(frame)
    scores = score(profile, keys, predicted)
    features = {
        name: {
            "psi": round(scores.psi[name], 6),
            "ks": round(scores.ks[name], 6),
            "level": level(scores.psi[name], moderate, major),
            "description": profile["features"][name].get("description", ""),
        }
        for name in scores.psi
    }
    mix = scores.class_mix
    names = profile["class_mix"]["class_names"]
    class_mix = {
        "psi": round(mix["psi"], 6),
        "level": level(mix["psi"], moderate, major),
        "chi2": round(mix["chi2"], 3),
        "chi2_p_value": mix["chi2_p_value"],
        "shares": dict(zip(names, (round(v, 6) for v in mix["shares"]), strict=True)),
        "reference_shares": dict(zip(names, (round(v, 6) for v in mix["reference_shares"]), strict=True)),
    }
    levels = [f["level"] for f in features.values()] + [class_mix["level"]]
    worst_name, worst_value = scores.worst()
    return {
        "n_beats": scores.n_beats,
        "reference": {"source": profile.get("source"), "n_beats": profile.get("n_beats")},
        "thresholds": {"psi_moderate": moderate, "psi_major": major},
        "drift": "major" in levels,
        "level": "major" if "major" in levels else "moderate" if "moderate" in levels else "stable",
        "worst": {"name": worst_name, "psi": round(worst_value, 6)},
        "features": features,
        "class_mix": class_mix,
    }


def psi_noise_floor(n_bins: int, n_reference: int, n_current: int) -> float:
    """The approximate expected PSI of two samples from the same distribution (no drift)."""
    return (n_bins - 1) * (1.0 / n_reference + 1.0 / n_current)


# ---------------------------------------------------------------- synthetic shifts (for checking a detector)

SHIFTS = ("noise", "baseline_wander", "gain", "fixed_scale")


def synthetic_shift(beats: pd.DataFrame, kind: str, strength: float, *, seed: int = 0) -> pd.DataFrame:
    """A copy of a beat table with a simulated acquisition shift applied to the kept samples.

    The beats are min-max scaled per beat, so shifts are expressed in units of a beat's range and
    each shifted beat is scaled back to [0, 1] over its kept samples, as ``cut_beats`` would:

    - ``noise``: white Gaussian noise of SD ``strength`` (e.g. 0.05: 5 % of the beat's range,
      about 0.05-0.08 mV on a typical 1-1.5 mV beat: electrode or muscle noise);
    - ``baseline_wander``: a 0.3 Hz sinusoid of amplitude ``strength`` with a random phase
      per beat (respiration, electrode motion);
    - ``gain``: the raw amplitude times ``strength``; the per-beat scaling removes it exactly, so
      this must show no drift (it checks that the detector does not raise false alarms);
    - ``fixed_scale``: samples times ``strength`` without re-scaling (a client scaling by a fixed
      full-scale range instead of per beat: a pre-processing mismatch).

    Padding stays zero; RR intervals and lengths are unchanged.
    """
    if kind not in SHIFTS:
        raise ValueError(f"unknown shift {kind!r}; known: {SHIFTS}")
    sample_cols = [f"s{i:03d}" for i in range(BEAT_SAMPLES)]
    out = beats.copy()
    samples = beats[sample_cols].to_numpy(dtype=np.float64)
    length = np.clip(beats["length"].to_numpy(dtype=np.float64), 1, BEAT_SAMPLES).astype(np.int64)
    mask = np.arange(BEAT_SAMPLES)[None, :] < length[:, None]
    rng = np.random.default_rng(seed)
    if kind == "fixed_scale":
        shifted = np.clip(samples * strength, 0.0, 1.0)
    else:
        if kind == "noise":
            shifted = samples + rng.normal(0.0, strength, samples.shape)
        elif kind == "baseline_wander":
            t = np.arange(BEAT_SAMPLES) / SAMPLE_RATE_HZ
            phase = rng.uniform(0, 2 * np.pi, size=(len(samples), 1))
            shifted = samples + strength * np.sin(2 * np.pi * 0.3 * t[None, :] + phase)
        else:  # gain: the whole beat's minimum and maximum scale by the same factor
            shifted = samples * strength
        low = np.where(mask, shifted, np.inf).min(axis=1, keepdims=True)
        high = np.where(mask, shifted, -np.inf).max(axis=1, keepdims=True)
        if kind == "gain":  # a beat longer than the row was scaled over samples it no longer has
            low, high = np.zeros_like(low), np.full_like(high, strength)
        span = np.where(high > low, high - low, 1.0)
        shifted = (shifted - low) / span
    shifted = np.where(mask, shifted, 0.0)
    out[sample_cols] = shifted.astype(np.float32)
    return out
