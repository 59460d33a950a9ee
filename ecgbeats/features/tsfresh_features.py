"""tsfresh features of single beats, the production way: broad candidates, selection on train, frozen.

1. ``candidate_parameters``: tsfresh's ``EfficientFCParameters`` minus the calculators that cost too
   much for what they add (measured by ``time_calculators``).
2. ``extract``: features of a (stratified) training subsample; ``select`` runs tsfresh's relevance
   table (multiclass, FDR level) on the training split only and keeps at most ``top_k`` features
   ranked by their smallest per-class p-value.
3. ``freeze``: the selection as ``kind_to_fc_parameters`` (``tsfresh.feature_extraction.settings.
   from_columns``) plus the training column order: ``TsfreshSettings``, a JSON file.
4. ``extract_selected``: exactly those features for any beats (every split, or one beat in the
   API), in the training column order. Non-finite values become NaN (LightGBM's missing value).

The time series of a beat is either its unpadded part (``padding="unpadded"``: the samples before
``length``) or all 187 samples (``padding="full"``, the zero padding included).
"""

from __future__ import annotations

import json
import logging
import re
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecgbeats.data.beats import BEAT_SAMPLES
from ecgbeats.data.dataset import SAMPLE_COLUMNS
from ecgbeats.io import atomic_path

log = logging.getLogger(__name__)

KIND = "beat"
SETTINGS_FILE = "tsfresh_settings.json"  # the frozen selection, in the features stage's output directory
PADDINGS = ("unpadded", "full")
# calculators left out by default: the slowest per feature in EfficientFCParameters on beats
# (measured with ``time_calculators``; see reports/processing.md)
DEFAULT_SLOW = (
    "augmented_dickey_fuller",
    "agg_linear_trend",
    "partial_autocorrelation",
    "ar_coefficient",
    "friedrich_coefficients",
    "max_langevin_fixed_point",
    "number_cwt_peaks",
    "cwt_coefficients",
    "sample_entropy",
    "lempel_ziv_complexity",
    "permutation_entropy",
    "fourier_entropy",
    "benford_correlation",
    "query_similarity_count",
    "matrix_profile",
    "change_quantiles",
)


@dataclass(frozen=True)
class TsfreshSettings:
    """The frozen selection: tsfresh settings, tsfresh column names and the model's column names."""

    kind_to_fc_parameters: dict[str, dict[str, Any]]
    tsfresh_columns: list[str]
    columns: list[str]
    padding: str = "unpadded"

    def to_json(self, path: str | Path) -> None:
        payload = {
            "padding": self.padding,
            "kind_to_fc_parameters": self.kind_to_fc_parameters,
            "tsfresh_columns": self.tsfresh_columns,
            "columns": self.columns,
        }
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(payload, indent=1, sort_keys=False) + "\n")

    @classmethod
    def from_json(cls, path: str | Path) -> TsfreshSettings:
        payload = json.loads(Path(path).read_text())
        return cls(
            kind_to_fc_parameters=payload["kind_to_fc_parameters"],
            tsfresh_columns=list(payload["tsfresh_columns"]),
            columns=list(payload["columns"]),
            padding=payload["padding"],
        )


def model_column(name: str) -> str:
    """A LightGBM-safe column name (no quotes, commas, brackets or colons) for a tsfresh name."""
    return "ts_" + re.sub(r"[^0-9A-Za-z_.\-]+", "_", name).strip("_")


def candidate_parameters(drop: Sequence[str] = DEFAULT_SLOW) -> dict[str, Any]:
    """EfficientFCParameters without the calculators in ``drop``."""
    from tsfresh.feature_extraction import EfficientFCParameters

    params = dict(EfficientFCParameters())
    return {name: value for name, value in params.items() if name not in set(drop)}


def to_long(beats: pd.DataFrame, padding: str = "unpadded") -> pd.DataFrame:
    """tsfresh's long format (id = row position, time, value) of the beats' series."""
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    samples = beats[SAMPLE_COLUMNS].to_numpy(dtype=np.float64)
    n = len(samples)
    if padding == "full":
        lengths = np.full(n, BEAT_SAMPLES)
    else:
        lengths = np.clip(beats["length"].to_numpy(dtype=np.int64), 2, BEAT_SAMPLES)
    keep = np.arange(BEAT_SAMPLES)[None, :] < lengths[:, None]
    ids, times = np.nonzero(keep)
    return pd.DataFrame({"id": ids, "time": times, "value": samples[ids, times]})


def extract(
    beats: pd.DataFrame,
    fc_parameters: Mapping[str, Any] | None = None,
    *,
    kind_to_fc_parameters: Mapping[str, Mapping[str, Any]] | None = None,
    padding: str = "unpadded",
    n_jobs: int = 0,
    chunk_beats: int = 20_000,
    progress: bool = False,
    distributor: Any = None,
) -> pd.DataFrame:
    """tsfresh features of every beat, one row per beat in input order (columns: tsfresh names).

    ``distributor``: a tsfresh distributor (e.g. ``ecgbeats.operations.compute.tsfresh_distributor``, Dask)
    used for every chunk instead of ``n_jobs``; None: tsfresh's own choice from ``n_jobs``.
    """
    from tsfresh import extract_features

    parts = []
    for start in range(0, len(beats), chunk_beats):
        chunk = beats.iloc[start : start + chunk_beats]
        long = to_long(chunk, padding)
        long["kind"] = KIND
        features = extract_features(
            long,
            column_id="id",
            column_sort="time",
            column_kind="kind",
            column_value="value",
            default_fc_parameters=dict(fc_parameters) if fc_parameters is not None else None,
            kind_to_fc_parameters={k: dict(v) for k, v in kind_to_fc_parameters.items()}
            if kind_to_fc_parameters is not None
            else None,
            n_jobs=n_jobs,
            disable_progressbar=not progress,
            impute_function=None,
            distributor=distributor,
        )
        parts.append(features.reindex(np.arange(len(chunk))))
    out = pd.concat(parts, ignore_index=True)
    return out.replace([np.inf, -np.inf], np.nan)


def time_calculators(
    beats: pd.DataFrame, fc_parameters: Mapping[str, Any], *, padding: str = "unpadded"
) -> pd.DataFrame:
    """Seconds per beat and features per calculator, each calculator extracted alone on ``beats``."""
    rows = []
    for name, value in fc_parameters.items():
        start = time.perf_counter()
        features = extract(beats, {name: value}, padding=padding, n_jobs=0)
        seconds = time.perf_counter() - start
        rows.append({"calculator": name, "features": features.shape[1], "ms_per_beat": 1000 * seconds / len(beats)})
    table = pd.DataFrame(rows)
    table["ms_per_beat_per_feature"] = table["ms_per_beat"] / table["features"].clip(lower=1)
    return table.sort_values("ms_per_beat", ascending=False, ignore_index=True)


def select(
    features: pd.DataFrame, labels: np.ndarray, *, fdr_level: float, top_k: int | None, n_jobs: int = 0
) -> tuple[list[str], pd.DataFrame]:
    """Relevant tsfresh columns (multiclass relevance table at ``fdr_level``), best ``top_k`` first.

    Rank: the smallest p-value over the one-versus-rest tests of the classes. Constant columns are
    irrelevant by construction. Returns the selected names and the full relevance table.
    """
    from tsfresh.feature_selection.relevance import calculate_relevance_table
    from tsfresh.utilities.dataframe_functions import impute

    with warnings.catch_warnings():  # all-NaN columns (e.g. FFT bins beyond a short beat) become 0
        warnings.simplefilter("ignore")
        x = impute(features.copy())
    y = pd.Series(np.asarray(labels), index=x.index)
    table = calculate_relevance_table(
        x, y, ml_task="classification", multiclass=True, n_significant=1, fdr_level=fdr_level, n_jobs=n_jobs
    )
    p_columns = [c for c in table.columns if c.startswith("p_value_")]
    table["p_value_min"] = table[p_columns].min(axis=1)
    table = table.sort_values(["relevant", "p_value_min"], ascending=[False, True])
    relevant = table.index[table["relevant"].astype(bool)].tolist()
    selected = relevant[:top_k] if top_k else relevant
    table["selected"] = table.index.isin(selected)
    return selected, table


def freeze(selected: Sequence[str], padding: str = "unpadded") -> TsfreshSettings:
    """``kind_to_fc_parameters`` for exactly the ``selected`` columns, and their model column names."""
    from tsfresh.feature_extraction.settings import from_columns

    kind_to_fc = from_columns(list(selected))
    columns = [model_column(c) for c in selected]
    if len(set(columns)) != len(columns):
        raise ValueError("two selected tsfresh columns map to the same model column name")
    return TsfreshSettings(
        kind_to_fc_parameters=json.loads(json.dumps(kind_to_fc, default=_jsonable)),
        tsfresh_columns=list(selected),
        columns=columns,
        padding=padding,
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot store {type(value)} in the tsfresh settings")


def extract_selected(
    beats: pd.DataFrame, settings: TsfreshSettings, *, n_jobs: int = 0, chunk_beats: int = 20_000,
    progress: bool = False, distributor: Any = None,
) -> pd.DataFrame:  # fmt: skip
    """The frozen features of ``beats`` in the training column order (float32, NaN where undefined).

    ``distributor``: as in ``extract`` (None: in process or ``n_jobs`` local processes).
    """
    if len(beats) == 0:
        return pd.DataFrame(columns=settings.columns, dtype=np.float32)
    raw = extract(
        beats,
        kind_to_fc_parameters=settings.kind_to_fc_parameters,
        padding=settings.padding,
        n_jobs=n_jobs,
        chunk_beats=chunk_beats,
        progress=progress,
        distributor=distributor,
    )
    out = raw.reindex(columns=settings.tsfresh_columns)
    out.columns = settings.columns
    return out.astype(np.float32).reset_index(drop=True)
