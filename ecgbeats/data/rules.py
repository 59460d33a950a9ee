"""The value rules of a beat row, in one place: the API's request models, the batch and drift CLIs
and the Kaggle-CSV reader of ingest all apply these.

- a beat is 187 finite values in [0, 1]; values up to ``VALUE_TOLERANCE`` outside are accepted
  (CSV round-off of the published rows) and clipped to [0, 1]; anything further out is rejected,
  since every beat is min-max scaled to [0, 1] before it is padded;
- a beat's values span at least ``MIN_BEAT_RANGE``: min-max scaling makes the range 1 over the kept
  samples, less only where a long beat is cut at 187 samples (the smallest range among the 109,446
  rebuilt beats is 0.244); an all-zero or constant row is not a beat and gets no class;
- RR intervals are optional (missing is NaN, which LightGBM treats as missing) and, when given,
  finite seconds in (0, ``MAX_RR_SECONDS``];
- ``length`` (samples before the zero padding) is optional; without it, it is the position after
  the last non-zero sample, as for the published Kaggle rows.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from ecgbeats.data.beats import BEAT_SAMPLES

VALUE_TOLERANCE = 1e-6  # how far outside [0, 1] a beat value may be (round-off), clipped to [0, 1]
MIN_BEAT_RANGE = 0.2  # the least max - min of a beat's values (see the module notes)
MAX_RR_SECONDS = 10.0  # longest RR interval accepted (a 6 beats/min rhythm; real pauses are shorter)
MAX_LENGTH = 2000  # longest unpadded beat, in 120 Hz samples (about 16 s)
SAMPLE_COLUMNS: list[str] = [f"s{i:03d}" for i in range(BEAT_SAMPLES)]  # a beat row's values
RR_COLUMNS = ("rr_prev", "rr_next", "rr_local")  # its optional rhythm, in seconds


def range_problem(values: np.ndarray) -> str:
    """Why one beat's values are not a min-max scaled beat ("" if they are)."""
    spread = float(np.max(values) - np.min(values)) if len(values) else 0.0
    if spread < MIN_BEAT_RANGE:
        return (
            f"the values span only {spread:.3g}; a min-max scaled beat spans at least {MIN_BEAT_RANGE:g} "
            "(an all-zero or constant row is not a beat)"
        )
    return ""


def row_problems(frame: pd.DataFrame) -> pd.Series:
    """Per row of a beat table, the first problem found (empty string for a good row).

    The check of the batch and drift CLIs and of ingest's Kaggle-CSV reader; the API's request models
    apply the same limits.
    """
    problems = pd.Series("", index=frame.index, dtype=object)

    def flag(mask: np.ndarray, message: Callable[[np.intp], str]) -> None:
        for pos in np.flatnonzero(mask & (problems.to_numpy() == "")):
            problems.iloc[pos] = message(pos)

    samples = frame[SAMPLE_COLUMNS].to_numpy(dtype=np.float64, na_value=np.nan)
    finite = np.isfinite(samples)
    flag(~finite.all(axis=1), lambda i: f"{SAMPLE_COLUMNS[int(np.argmin(finite[i]))]}: not a finite number")
    inside = (samples >= -VALUE_TOLERANCE) & (samples <= 1 + VALUE_TOLERANCE) | ~finite
    flag(
        ~inside.all(axis=1),
        lambda i: (
            f"{SAMPLE_COLUMNS[int(np.argmin(inside[i]))]}: {samples[i, np.argmin(inside[i])]:g} is outside [0, 1]"
        ),
    )
    finite_values = np.where(finite, samples, 0.5)  # rows with a non-finite value are flagged already
    spread = finite_values.max(axis=1) - finite_values.min(axis=1)
    flag(spread < MIN_BEAT_RANGE, lambda i: f"samples: {range_problem(samples[i])}")
    for col in RR_COLUMNS:
        if col in frame:
            rr = frame[col].to_numpy(dtype=np.float64, na_value=np.nan)
            bad = ~np.isnan(rr) & ~((rr > 0) & (rr <= MAX_RR_SECONDS))

            # a def, not a lambda: mypy cannot infer the type of a lambda with default arguments
            def rr_message(i: np.intp, col: str = col, rr: np.ndarray = rr) -> str:
                return f"{col}: {rr[i]:g} is not in (0, {MAX_RR_SECONDS:g}] seconds"

            flag(bad, rr_message)
    if "length" in frame:
        length = frame["length"].to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isnan(length) & ~((length >= 0) & (length <= MAX_LENGTH) & (length == np.round(length)))
        flag(bad, lambda i: f"length: {length[i]:g} is not a whole number in [0, {MAX_LENGTH}]")
    return problems
