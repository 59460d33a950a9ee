"""Model inputs from the beat table, by named groups; the same function at training and serving time."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ecgbeats.dataset import SAMPLE_COLUMNS

RR_COLUMNS = ["rr_prev", "rr_next", "rr_local"]
FEATURE_GROUPS: dict[str, str] = {
    "samples": "the 187 scaled samples of the beat",
    "length": "samples before the zero padding (a heart-rate proxy)",
    "rr": "RR intervals (s) and their ratios to the local average rhythm",
}


def build_features(beats: pd.DataFrame, groups: Sequence[str]) -> pd.DataFrame:
    """Feature columns of ``groups`` in a fixed order; missing RR values stay NaN for LightGBM."""
    unknown = [g for g in groups if g not in FEATURE_GROUPS]
    if unknown:
        raise ValueError(f"unknown feature groups {unknown}; known: {list(FEATURE_GROUPS)}")
    parts: list[pd.DataFrame] = []
    if "samples" in groups:
        parts.append(beats[SAMPLE_COLUMNS].astype(np.float32))
    if "length" in groups:
        parts.append(beats[["length"]].astype(np.float32))
    if "rr" in groups:
        rr = beats[RR_COLUMNS].astype(np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            rr["rr_prev_ratio"] = rr["rr_prev"] / rr["rr_local"]
            rr["rr_next_ratio"] = rr["rr_next"] / rr["rr_local"]
            rr["rr_prev_next_ratio"] = rr["rr_prev"] / rr["rr_next"]
        parts.append(rr.replace([np.inf, -np.inf], np.nan))
    if not parts:
        raise ValueError("no feature group selected")
    return pd.concat(parts, axis=1).reset_index(drop=True)
