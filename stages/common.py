"""What every stage shares: its params section and logging. Nothing else: a stage's code deps stay honest."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml


def load_params(section: str, path: str | Path = "params.yaml", *, optional: bool = False) -> dict[str, Any]:
    """One section of the params file; a missing section is an error unless ``optional`` (then empty)."""
    with open(path) as handle:
        params = yaml.safe_load(handle) or {}
    if section not in params:
        if optional:
            return {}
        raise KeyError(f"{path} has no '{section}' section")
    return params[section] or {}


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def beat_end_of(ingest: dict[str, Any], protocol: str) -> str:
    """Where ``protocol``'s beats end (``ingest.beat_end``: one rule, or one per protocol)."""
    rule = ingest.get("beat_end", "next_beat")
    return str(rule[protocol] if isinstance(rule, dict) else rule)
