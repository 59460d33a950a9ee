"""What every stage shares: its params section and logging."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ecgbeats.compute import ComputeConfig
from ecgbeats.features import build_features
from ecgbeats.tsfeatures import TsfreshSettings

TSFRESH_SETTINGS_FILE = "tsfresh_settings.json"  # in the features stage's output directory


def load_params(section: str, path: str | Path = "params.yaml") -> dict[str, Any]:
    with open(path) as handle:
        params = yaml.safe_load(handle) or {}
    if section not in params:
        raise KeyError(f"{path} has no '{section}' section")
    return params[section]


def compute_config(path: str | Path = "params.yaml") -> ComputeConfig:
    """The ``compute`` section (where extraction and training run); without one, ``local``."""
    with open(path) as handle:
        params = yaml.safe_load(handle) or {}
    return ComputeConfig.from_params(params.get("compute"))


def feature_groups(train_params: dict[str, Any], protocol: str) -> list[str]:
    """The ``train.features`` groups for a protocol: a list for all protocols, or one list per protocol."""
    groups = train_params["features"]
    if isinstance(groups, dict):
        if protocol not in groups:
            raise KeyError(f"train.features has no entry for protocol {protocol!r}; it has {sorted(groups)}")
        groups = groups[protocol]
    return list(groups)


def tsfresh_settings(groups: list[str], tsfresh_dir: Path | None) -> TsfreshSettings | None:
    """The frozen tsfresh selection when ``groups`` has the tsfresh group (else None)."""
    if "tsfresh" not in groups:
        return None
    if tsfresh_dir is None:
        raise ValueError("the feature groups include tsfresh: pass the features stage's directory (--tsfresh)")
    return TsfreshSettings.from_json(tsfresh_dir / TSFRESH_SETTINGS_FILE)


def split_features(beats: pd.DataFrame, groups: list[str], tsfresh_dir: Path | None, split: str) -> pd.DataFrame:
    """Model inputs of one split; tsfresh columns come from the features stage's extraction of that split."""
    settings = tsfresh_settings(groups, tsfresh_dir)
    cache = pd.read_parquet(tsfresh_dir / f"{split}.parquet") if settings is not None and tsfresh_dir else None
    return build_features(beats, groups, tsfresh_settings=settings, tsfresh_cache=cache)


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
