"""How closely rebuilt beats match published Kaggle rows: nearest same-class beat per row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ecgbeats.data.aami import CLASS_NAMES
from ecgbeats.data.dataset import SAMPLE_COLUMNS, read_kaggle_csv

EXACT_TOLERANCE = 1e-6  # the published CSVs hold float32 values written with 18 digits


def compare_with_reference(beats: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """For each reference row, the nearest rebuilt beat of the same class and the differences."""
    rows = []
    reference = reference.reset_index(drop=True)
    row_in_file = reference.groupby("kaggle_split").cumcount()
    for i, ref in reference.iterrows():
        candidates = beats[beats["label"] == ref["label"]]
        target = ref[SAMPLE_COLUMNS].to_numpy(dtype=np.float64)
        if candidates.empty:
            rows.append(
                {
                    "row": i,
                    "class": CLASS_NAMES[ref["label"]],
                    "max_abs": np.nan,
                    "rms": np.nan,
                }
            )
            continue
        matrix = candidates[SAMPLE_COLUMNS].to_numpy(dtype=np.float64)
        diff = matrix - target
        best = int(np.argmin(np.einsum("ij,ij->i", diff, diff)))
        match = candidates.iloc[best]
        rows.append(
            {
                "reference": f"{ref['kaggle_split']}:{row_in_file[i]}",
                "class": CLASS_NAMES[ref["label"]],
                "max_abs": float(np.abs(diff[best]).max()),
                "rms": float(np.sqrt(np.mean(diff[best] ** 2))),
                "record": None if pd.isna(match["record"]) else str(match["record"]),
                "beat_index": None if pd.isna(match["beat_index"]) else int(match["beat_index"]),
                "r_peak": None if pd.isna(match["r_peak"]) else int(match["r_peak"]),
                "length_published": int(ref["length"]),
                "length_rebuilt": int(match["length"]),
            }
        )
    return pd.DataFrame(rows)


def load_reference(directory: str | Path) -> pd.DataFrame:
    """The published reference rows (``*.csv`` in the Kaggle format), tagged with their file name."""
    parts = []
    for path in sorted(Path(directory).glob("*.csv")):
        frame = read_kaggle_csv(path, split=path.stem)
        parts.append(frame)
    if not parts:
        raise FileNotFoundError(f"{directory}: no reference CSV files")
    return pd.concat(parts, ignore_index=True)


def summarize(comparison: pd.DataFrame) -> dict[str, float | int | None]:
    """Exact matches, the spread of the differences, and the worst of the rows that do not match."""
    exact = comparison["max_abs"] < EXACT_TOLERANCE
    rest = comparison[~exact]
    return {
        "rows": int(len(comparison)),
        "exact": int(exact.sum()),
        "inexact": int((~exact).sum()),
        "inexact_max_abs_median": float(rest["max_abs"].median()) if len(rest) else None,
        "inexact_max_abs_worst": float(rest["max_abs"].max()) if len(rest) else None,
        "inexact_rms_median": float(rest["rms"].median()) if len(rest) else None,
        "inexact_rms_worst": float(rest["rms"].max()) if len(rest) else None,
        "max_abs_median": float(comparison["max_abs"].median()),
        "max_abs_worst": float(comparison["max_abs"].max()),
        "rms_median": float(comparison["rms"].median()),
        "rms_worst": float(comparison["rms"].max()),
        "length_matches": int((comparison["length_published"] == comparison["length_rebuilt"]).sum()),
    }
