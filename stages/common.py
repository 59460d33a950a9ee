"""What every stage shares: its params section and logging."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml


def load_params(section: str, path: str | Path = "params.yaml") -> dict[str, Any]:
    with open(path) as handle:
        params = yaml.safe_load(handle) or {}
    if section not in params:
        raise KeyError(f"{path} has no '{section}' section")
    return params[section]


def feature_groups(train_params: dict[str, Any], protocol: str) -> list[str]:
    """The ``train.features`` groups for a protocol: a list for all protocols, or one list per protocol."""
    groups = train_params["features"]
    if isinstance(groups, dict):
        if protocol not in groups:
            raise KeyError(f"train.features has no entry for protocol {protocol!r}; it has {sorted(groups)}")
        groups = groups[protocol]
    return list(groups)


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
