"""ecgbeats: single-heartbeat classification (AAMI N, S, V, F, Q) from the MIT-BIH Arrhythmia Database."""

__version__ = "0.1.0"
