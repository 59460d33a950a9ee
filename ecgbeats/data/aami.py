"""AAMI heartbeat classes and the MIT-BIH record groups used by the evaluation protocols."""

from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = ("N", "S", "V", "F", "Q")
CLASS_DESCRIPTIONS: dict[str, str] = {
    "N": "normal and bundle branch block beats",
    "S": "supraventricular ectopic beats",
    "V": "ventricular ectopic beats",
    "F": "fusion of ventricular and normal beats",
    "Q": "paced and unclassifiable beats",
}

# MIT-BIH beat annotation symbols grouped into AAMI classes (ANSI/AAMI EC57).
# The classes inter-patient results are usually averaged over (de Chazal 2004 and after): Q is left out,
# since DS1 and DS2 hold only a handful of Q beats once the paced records are excluded.
MACRO_NSVF_LABELS: tuple[int, ...] = tuple(CLASS_NAMES.index(c) for c in ("N", "S", "V", "F"))

SYMBOL_TO_CLASS: dict[str, str] = {
    **dict.fromkeys("NLRej", "N"),
    **dict.fromkeys("AaJS", "S"),
    **dict.fromkeys("VE", "V"),
    "F": "F",
    **dict.fromkeys("/fQ", "Q"),
}
SYMBOL_TO_LABEL: dict[str, int] = {s: CLASS_NAMES.index(c) for s, c in SYMBOL_TO_CLASS.items()}

# Every PhysioNet annotation code that marks a QRS complex; RR intervals are measured between these.
BEAT_SYMBOLS: frozenset[str] = frozenset("NLRBAaJSVrFejnE/fQ?")

# de Chazal et al. 2004 inter-patient split; the paced records 102, 104, 107 and 217 are in neither.
DS1: tuple[str, ...] = (
    "101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122",
    "124", "201", "203", "205", "207", "208", "209", "215", "220", "223", "230",
)  # fmt: skip
DS2: tuple[str, ...] = (
    "100", "103", "105", "111", "113", "117", "121", "123", "200", "202", "210",
    "212", "213", "214", "219", "221", "222", "228", "231", "232", "233", "234",
)  # fmt: skip
PACED: tuple[str, ...] = ("102", "104", "107", "217")
