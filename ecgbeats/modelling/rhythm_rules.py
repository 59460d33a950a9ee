"""A rhythm interpretation over the record model: what a supraventricular beat is, said as a rule.

The training patients cannot teach everything a new patient shows. No DS1 record has ectopic beats as
its majority, and DS1's supraventricular (S) beats are followed by a pause; so trees learned on DS1 call
a run of atrial ectopic beats "on time" against its neighbours, whatever they say of the sinus rhythm.
A Holter reader, and Teijeiro et al. (2018), apply the definition instead, and so do these two rules,
on the measures of :mod:`ecgbeats.features.reference`:

- **premature supraventricular**: a beat the model calls N is S when the recording has a sinus
  reference (``ref_sinus``), the beat's QRS is the reference's (``ref_qrs_corr`` at least
  ``qrs_corr``), it comes early against the sinus rhythm (``rr_prev_ref`` below ``premature``), its P
  wave is unlike the sinus P wave (``ref_p_corr`` below ``p_corr``; none counts as unlike), and the
  rhythm is not atrial fibrillation (:func:`ecgbeats.features.reference.rhythm_context`);
- **fibrillation**: in atrial fibrillation or flutter an early beat is not premature: a beat the model
  calls S with the reference's QRS is N.

A rule changes a beat's class by exchanging its N and S probabilities, so the answer stays a
distribution and a beat no rule touches keeps the model's. Which rules apply, and their thresholds,
are chosen on the cross-validation over the DS1 patients (``stages/crossval.py``) and travel in the
bundle; ``None`` turns a rule off.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from ecgbeats.data.aami import CLASS_NAMES
from ecgbeats.features.reference import AF_LABEL, ReferenceConfig, rhythm_context
from ecgbeats.modelling.evaluation import evaluate_predictions

N, S = CLASS_NAMES.index("N"), CLASS_NAMES.index("S")
RULE_COLUMNS = ("ref_sinus", "ref_qrs_corr", "rr_prev_ref", "ref_p_corr", "ctx_irregularity", "ctx_no_p_share")


@dataclass(frozen=True)
class RhythmRules:
    premature: float | None = None  # rr_prev_ref below this: early against the sinus rhythm (None: rule off)
    p_corr: float | None = None  # ref_p_corr below this: not the sinus P wave (None: any P wave)
    qrs_corr: float = 0.9  # ref_qrs_corr at least this: the reference's QRS
    fibrillation: bool = False  # in atrial fibrillation, S with the reference's QRS is N

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> RhythmRules:
        return cls(**(values or {}))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def active(self) -> bool:
        return self.premature is not None or self.fibrillation

    def apply(self, proba: np.ndarray, measures: pd.DataFrame, reference: ReferenceConfig) -> np.ndarray:
        """``proba`` (beats, classes) with the rules applied; ``measures`` holds :data:`RULE_COLUMNS`."""
        if not self.active or len(proba) == 0:
            return proba
        missing = [c for c in RULE_COLUMNS if c not in measures.columns]
        if missing:
            raise ValueError(f"rhythm rules need the reference measures {missing} (record group 'reference')")
        values = {c: measures[c].to_numpy(dtype=np.float64) for c in RULE_COLUMNS}
        predicted = proba.argmax(axis=1)
        same_qrs = np.nan_to_num(values["ref_qrs_corr"], nan=-1.0) >= self.qrs_corr
        fibrillation = rhythm_context(values["ctx_irregularity"], values["ctx_no_p_share"], reference) == AF_LABEL
        swap = np.zeros(len(proba), dtype=bool)
        if self.premature is not None:
            early = np.nan_to_num(values["rr_prev_ref"], nan=np.inf) < self.premature
            other_p = (
                np.ones(len(proba), dtype=bool)
                if self.p_corr is None
                else ~(np.nan_to_num(values["ref_p_corr"], nan=-1.0) >= self.p_corr)
            )
            sinus = values["ref_sinus"] == 1
            swap |= (predicted == N) & sinus & same_qrs & early & other_p & ~fibrillation
        if self.fibrillation:
            swap |= (predicted == S) & same_qrs & fibrillation
        if not swap.any():
            return proba
        out = proba.copy()
        out[swap, N], out[swap, S] = proba[swap, S], proba[swap, N]
        return out


def rule_grid(grid: dict[str, list[Any]]) -> list[RhythmRules]:
    """Every combination of the values in ``grid`` (``premature``, ``p_corr``, ``qrs_corr``,
    ``fibrillation``), the rules off included once."""
    combos = [RhythmRules()]
    for premature in grid.get("premature", [None]):
        for p_corr in grid.get("p_corr", [None]):
            for qrs_corr in grid.get("qrs_corr", [0.9]):
                for fibrillation in grid.get("fibrillation", [False]):
                    rules = RhythmRules(premature, p_corr, float(qrs_corr), bool(fibrillation))
                    if rules.active and rules not in combos:
                        combos.append(rules)
    return combos


def choose_rules(
    y: np.ndarray, proba: np.ndarray, measures: pd.DataFrame, grid: list[RhythmRules], reference: ReferenceConfig
) -> tuple[RhythmRules, list[dict[str, Any]]]:
    """The rules of ``grid`` with the best pooled macro-F1 over N, S, V and F on out-of-fold ``proba``
    (the first of equals: the grid starts with the rules off), and every candidate's figures."""
    table: list[dict[str, Any]] = []
    best, best_score = grid[0], -1.0
    for rules in grid:
        report = evaluate_predictions(y, rules.apply(proba, measures, reference), n_boot=0)
        per = report["per_class"]
        table.append(
            {**rules.to_dict(), "accuracy": report["accuracy"], "macro_f1_nsvf": report["macro_f1_nsvf"],
             "S_Se": per["S"]["recall"], "S_+P": per["S"]["precision"]}
        )  # fmt: skip
        if report["macro_f1_nsvf"] > best_score:
            best, best_score = rules, report["macro_f1_nsvf"]
    return best, table
