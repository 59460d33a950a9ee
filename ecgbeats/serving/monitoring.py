"""Prometheus metrics of the service beyond the HTTP ones that prometheus-fastapi-instrumentator adds.

Each app gets its own ``CollectorRegistry``, so several apps (tests) can live in one process.

Drift hook: :meth:`ServiceMetrics.observe` receives the model's input features and the predicted
probabilities of every scored batch and passes them to ``ServiceMetrics.drift_observers``. When the
bundle carries a reference profile (``reference.json``), :meth:`ServiceMetrics.enable_drift` adds a
:class:`DriftMonitor`: a sliding window of recent inputs and the ``ecgbeats_drift_*`` gauges.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd
from prometheus_client import CollectorRegistry, Counter, Gauge, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ecgbeats.operations import drift
from ecgbeats.serving.scoring import PredictionObserver

log = logging.getLogger(__name__)

REJECT_REASONS = ("validation", "unscorable", "body_too_large", "content_type", "bad_request")


class ServiceMetrics:
    def __init__(self, class_names: list[str], registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.class_names = list(class_names)
        self.predicted = Counter(
            "ecgbeats_predicted_beats",
            "Beats classified, by predicted AAMI class",
            ["class_name"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "ecgbeats_rejected_inputs",
            "Requests rejected for their input (4xx), by endpoint, reason and top-level field",
            ["endpoint", "reason", "field"],
            registry=self.registry,
        )
        self.model_info = Info("ecgbeats_model", "The model bundle being served", registry=self.registry)
        self.model_loaded = Gauge("ecgbeats_model_loaded", "1 once the model bundle is loaded", registry=self.registry)
        for name in self.class_names:  # export zeros so rates work from the first scrape
            self.predicted.labels(class_name=name)
        self.drift_observers: list[PredictionObserver] = []  # e.g. a DriftMonitor (see enable_drift)
        self.drift: DriftMonitor | None = None

    def enable_drift(self, profile: Mapping[str, Any], *, window: int, min_beats: int) -> DriftMonitor:
        """Register a :class:`DriftMonitor` on the registry and as a drift observer (once)."""
        if self.drift is None:
            self.drift = DriftMonitor(profile, window=window, min_beats=min_beats)
            self.registry.register(self.drift)
            self.drift_observers.append(self.drift)
        return self.drift

    def observe(self, features: pd.DataFrame, proba: np.ndarray) -> None:
        """A :data:`PredictionObserver`: count the predicted classes, then run the drift observers."""
        counts = np.bincount(np.asarray(proba).argmax(axis=1), minlength=len(self.class_names))
        for name, count in zip(self.class_names, counts, strict=False):
            if count:
                self.predicted.labels(class_name=name).inc(int(count))
        for observer in self.drift_observers:
            try:
                observer(features, proba)
            except Exception:  # monitoring must never fail a prediction
                log.exception("drift observer %r failed", observer)

    def reject(self, endpoint: str, reason: str, field: str, known_fields: frozenset[str]) -> None:
        """Count a rejected input; unknown field names are folded into ``other`` (bounded labels)."""
        top = field.split(".")[0].split("[")[0]
        self.rejected.labels(endpoint=endpoint, reason=reason, field=top if top in known_fields else "other").inc()


class DriftMonitor(Collector):
    """A :data:`PredictionObserver` keeping the last ``window`` beats' key features and predicted
    classes, and a Prometheus collector computing the drift gauges from them at scrape time.

    Observing a batch only computes the key features (a few vectorised passes) and copies them into a
    ring buffer under a lock, so the scoring path stays cheap and thread-safe (FastAPI runs the sync
    endpoints in a thread pool); PSI and KS are computed when ``/metrics`` is scraped. Gauges:

    - ``ecgbeats_drift_window_beats``: beats in the window (always);
    - ``ecgbeats_drift_psi{feature}``, ``ecgbeats_drift_ks{feature}``: per key feature;
    - ``ecgbeats_drift_class_mix_psi`` and ``ecgbeats_drift_predicted_share{class_name}``;

    the per-feature and class-mix gauges appear once the window holds ``min_beats`` beats (below,
    the sampling noise of PSI alone would trip the alert thresholds).
    """

    def __init__(self, profile: Mapping[str, Any], *, window: int = 2000, min_beats: int = 500) -> None:
        self.profile = profile
        self.features = list(profile["features"])
        self.record = bool(self.features) and set(self.features) <= set(drift.RECORD_KEY_FEATURES)
        self.class_names = list(profile["class_mix"]["class_names"])
        self.window = int(window)
        self.min_beats = int(min_beats)
        self._values = np.full((self.window, len(self.features)), np.nan)
        self._classes = np.zeros(self.window, dtype=np.int64)
        self._next = 0  # ring position of the next beat
        self._count = 0  # beats in the window
        self._lock = threading.Lock()
        self._columns: pd.Index | None = None
        self._where: dict[str, object] = {}

    def _positions(self, columns: pd.Index) -> dict[str, object]:
        """Where the key features' inputs sit in the model's feature columns (cached per column set)."""
        if self._columns is None or not columns.equals(self._columns):
            where = {name: i for i, name in enumerate(columns)}
            samples = [where.get(f"s{i:03d}") for i in range(drift.BEAT_SAMPLES)]
            self._where = {
                "samples": None if None in samples else np.array(samples),
                **{name: where.get(name) for name in ("length", "rr_prev", "rr_local")},
            }
            self._columns = columns
        return self._where

    def __call__(self, features: pd.DataFrame, proba: np.ndarray) -> None:
        if self.record:  # a record model's key features are columns of its table
            values = features.reindex(columns=self.features).to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            where = self._positions(features.columns)
            array = features.to_numpy(dtype=np.float64)
            inputs = {name: None if pos is None else array[:, pos] for name, pos in where.items()}
            keys = drift.key_feature_values(**inputs)
            n_rows = len(array)
            values = np.column_stack([keys.get(name, np.full(n_rows, np.nan)) for name in self.features])
        values = values[-self.window :]
        classes = np.asarray(proba).argmax(axis=1)[-self.window :]
        n = len(values)
        with self._lock:
            pos = (self._next + np.arange(n)) % self.window
            self._values[pos] = values
            self._classes[pos] = classes
            self._next = (self._next + n) % self.window
            self._count = min(self._count + n, self.window)

    def snapshot(self) -> tuple[pd.DataFrame, np.ndarray]:
        """The window's key features and predicted class codes (a copy)."""
        with self._lock:
            count = self._count
            values = self._values[:count].copy()
            classes = self._classes[:count].copy()
        return pd.DataFrame(values, columns=self.features), classes

    def scores(self) -> drift.DriftScores | None:
        keys, classes = self.snapshot()
        if len(keys) < self.min_beats:
            return None
        return drift.score(self.profile, keys, classes)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            count = self._count
        yield GaugeMetricFamily(
            "ecgbeats_drift_window_beats", "Beats in the drift window (the most recent inputs)", value=count
        )
        try:
            scores = self.scores()
        except Exception:  # a scrape must never fail for a statistic
            log.exception("drift scores failed")
            return
        if scores is None:
            return
        psi = GaugeMetricFamily(
            "ecgbeats_drift_psi", "PSI of a key feature, window against the training reference", labels=["feature"]
        )
        ks = GaugeMetricFamily(
            "ecgbeats_drift_ks",
            "KS distance of a key feature, window against the training reference",
            labels=["feature"],
        )
        for name in scores.psi:
            psi.add_metric([name], scores.psi[name])
            ks.add_metric([name], scores.ks[name])
        yield psi
        yield ks
        yield GaugeMetricFamily(
            "ecgbeats_drift_class_mix_psi",
            "PSI of the predicted class mix, window against the training predictions",
            value=scores.class_mix["psi"],
        )
        share = GaugeMetricFamily(
            "ecgbeats_drift_predicted_share", "Share of each predicted class in the window", labels=["class_name"]
        )
        for name, value in zip(self.class_names, scores.class_mix["shares"], strict=True):
            share.add_metric([name], value)
        yield share
