"""Service settings, read from ``ECGBEATS_*`` environment variables; every one has a default."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """What the service loads and the limits it enforces on its inputs.

    Each field is set by the environment variable ``ECGBEATS_<FIELD NAME IN CAPITALS>``,
    e.g. ``ECGBEATS_MODEL_DIR=models/interpatient``.
    """

    model_config = SettingsConfigDict(env_prefix="ECGBEATS_", frozen=True, extra="ignore")

    model_dir: Path = Field(
        Path("models/record-reference"),
        description="the model bundle directory to serve (default: the record model on each recording's own sinus "
        "reference, fitted on every non-paced record)",
    )
    model_version: str | None = Field(
        None,
        description="the version to report; default: the bundle's meta `version`, else "
        "`<ecgbeats version>+<protocol>.<first 12 hex of the bundle digest>`",
    )
    model_digest: str | None = Field(
        None,
        description="if set, the full sha256 of the bundle's manifest (64 hex digits): the service, the batch "
        "CLI and the drift CLI refuse any other bundle before reading it (see reports/deployment.md)",
    )
    drift_window: int = Field(2000, ge=10, le=1_000_000, description="recent beats kept for the drift gauges")
    drift_min_beats: int = Field(
        500, ge=1, description="beats the window needs before drift gauges are exported (PSI noise floor)"
    )
    predict_threads: int = Field(
        1, ge=1, le=64, description="LightGBM threads per prediction; scale out with workers or replicas instead"
    )
    test_metrics: Path | None = Field(
        None, description="a JSON file of held-out test metrics (e.g. metrics/kaggle/test.json) for GET /v1/model"
    )
    max_batch_beats: int = Field(1000, ge=1, le=100_000, description="most beats in one /v1/beats:classify call")
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024, description="largest request body accepted")
    min_fs: float = Field(100.0, gt=0, description="lowest sampling rate (Hz) of a strip")
    max_fs: float = Field(1000.0, gt=0, description="highest sampling rate (Hz) of a strip")
    min_strip_seconds: float = Field(10.0, gt=0, description="shortest strip accepted")
    max_strip_seconds: float = Field(
        1830.0, gt=0, description="longest strip accepted (a whole 30-min Holter excerpt: MIT-BIH records are 1,806 s)"
    )
    max_abs_mv: float = Field(50.0, gt=0, description="largest |value| of a strip sample, in millivolts")

    # access control (ecgbeats.serving.security)
    auth: Literal["keys", "off"] = Field(
        "keys",
        description="`keys`: every endpoint but /health, /ready and the viewer page needs a bearer API key; "
        "`off`: everything is open, for local use only (drift gauges then count every client's beats)",
    )
    api_keys: str | None = Field(None, description="comma-separated `sha256:<hex>` hashes of the client keys")
    api_keys_file: Path | None = Field(
        None, description="a file of client key hashes, one `sha256:<hex> [name]` per line: classify, /v1/model"
    )
    metrics_keys: str | None = Field(None, description="comma-separated hashes of the keys for /metrics and docs")
    metrics_keys_file: Path | None = Field(None, description="a file of key hashes for /metrics and the API docs")
    metrics_public: bool = Field(
        False, description="leave /metrics and the API docs open (a scraper on a private network)"
    )

    # connections and admission control
    header_timeout: float = Field(
        10.0, gt=0, le=300, description="seconds a connection has to send complete request headers; then 408"
    )
    body_timeout: float = Field(60.0, gt=0, le=3600, description="seconds a request has to send its whole body")
    keep_alive_timeout: float = Field(
        5.0, gt=0, le=600,
        description="seconds a kept-alive connection may stay idle between requests; then it is closed "
        "(`--timeout-keep-alive` of `python -m ecgbeats.serving` sets it too)",
    )  # fmt: skip
    max_connections: int = Field(
        1000, ge=1, le=100_000,
        description="open connections kept; beyond, a new connection that sends a complete request head gets room: "
        "the oldest idle keep-alive connection is closed, else the one longest waiting for its request headers "
        "gets 503; a new one that stalls itself, or finds no room, gets 503 and is closed (a GET or HEAD without "
        "a body, such as a health probe, is answered even then)",
    )  # fmt: skip
    max_receiving_bytes: int = Field(
        256 * 1024 * 1024, ge=1024,
        description="body bytes held at once by the classify requests still sending their body (a request takes "
        "a worker or a queue place only once its body is in); beyond, the request adding to them gets 503",
    )  # fmt: skip
    strip_workers: int = Field(
        1, ge=1, le=64, description="worker processes scoring strips, one strip each at a time (a strip costs seconds)"
    )
    beat_workers: int = Field(2, ge=1, le=64, description="beat batches scored at once")
    max_queued: int = Field(
        8, ge=0, le=10_000, description="requests of each kind waiting for a worker; beyond, 503 with Retry-After"
    )
    retry_after: int = Field(1, ge=1, le=3600, description="seconds a refused client is told to wait (Retry-After)")
    shutdown_timeout: float = Field(
        10.0, gt=0, le=600, description="seconds a shutdown waits for requests in flight before cancelling them"
    )

    @field_validator("model_version", "model_digest", "api_keys", "metrics_keys", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _ranges(self) -> Settings:
        if self.min_fs > self.max_fs:
            raise ValueError(f"min_fs {self.min_fs} is above max_fs {self.max_fs}")
        if self.drift_min_beats > self.drift_window:
            raise ValueError(f"drift_min_beats {self.drift_min_beats} is above drift_window {self.drift_window}")
        if self.min_strip_seconds > self.max_strip_seconds:
            raise ValueError("min_strip_seconds is above max_strip_seconds")
        if self.max_body_bytes > self.max_receiving_bytes:
            raise ValueError("max_body_bytes is above max_receiving_bytes: the largest body could never be received")
        return self

    @property
    def min_strip_samples(self) -> int:
        """The fewest samples any accepted strip can have (shortest strip at the lowest rate)."""
        return int(self.min_strip_seconds * self.min_fs)

    @property
    def max_strip_samples(self) -> int:
        """The most samples any accepted strip can have (longest strip at the highest rate)."""
        return int(self.max_strip_seconds * self.max_fs)


class SettingsError(ValueError):
    """Settings from the environment that cannot be used; the message is one line naming each variable."""


def load_settings() -> Settings:
    """``Settings()`` from the environment, with a one-line error naming the bad variables."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as err:
        problems = "; ".join(
            f"ECGBEATS_{'_'.join(str(p) for p in e['loc']).upper() or '*'}: {e['msg']}" for e in err.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from None
