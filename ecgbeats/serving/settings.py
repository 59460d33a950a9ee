"""Service settings, read from ``ECGBEATS_*`` environment variables; every one has a default."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """What the service loads and the limits it enforces on its inputs.

    Each field is set by the environment variable ``ECGBEATS_<FIELD NAME IN CAPITALS>``,
    e.g. ``ECGBEATS_MODEL_DIR=models/interpatient``.
    """

    model_config = SettingsConfigDict(env_prefix="ECGBEATS_", frozen=True, extra="ignore")

    model_dir: Path = Field(Path("models/kaggle"), description="the model bundle directory to serve")
    model_version: str | None = Field(
        None,
        description="the version to report; default: the bundle's meta `version`, else "
        "`<ecgbeats version>+<protocol>.<first 12 hex of the bundle digest>`",
    )
    test_metrics: Path | None = Field(
        None, description="a JSON file of held-out test metrics (e.g. metrics/kaggle/test.json) for GET /v1/model"
    )
    max_batch_beats: int = Field(1000, ge=1, le=100_000, description="most beats in one /v1/beats:classify call")
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024, description="largest request body accepted")
    min_fs: float = Field(100.0, gt=0, description="lowest sampling rate (Hz) of a strip")
    max_fs: float = Field(1000.0, gt=0, description="highest sampling rate (Hz) of a strip")
    min_strip_seconds: float = Field(10.0, gt=0, description="shortest strip accepted")
    max_strip_seconds: float = Field(1800.0, gt=0, description="longest strip accepted (30 min)")
    max_abs_mv: float = Field(50.0, gt=0, description="largest |value| of a strip sample, in millivolts")

    @model_validator(mode="after")
    def _ranges(self) -> Settings:
        if self.min_fs > self.max_fs:
            raise ValueError(f"min_fs {self.min_fs} is above max_fs {self.max_fs}")
        if self.min_strip_seconds > self.max_strip_seconds:
            raise ValueError("min_strip_seconds is above max_strip_seconds")
        return self

    @property
    def min_strip_samples(self) -> int:
        """The fewest samples any accepted strip can have (shortest strip at the lowest rate)."""
        return int(self.min_strip_seconds * self.min_fs)

    @property
    def max_strip_samples(self) -> int:
        """The most samples any accepted strip can have (longest strip at the highest rate)."""
        return int(self.max_strip_seconds * self.max_fs)
