"""Prometheus metrics of the service beyond the HTTP ones that prometheus-fastapi-instrumentator adds.

Each app gets its own ``CollectorRegistry``, so several apps (tests) can live in one process.

Drift hook: :meth:`ServiceMetrics.observe` receives the model's input features and the predicted
probabilities of every scored batch. Drift gauges (e.g. population stability of ``length`` and the RR
features, the predicted class mix against the training one) go in a :data:`PredictionObserver`
appended to ``ServiceMetrics.drift_observers``; register their gauges on ``ServiceMetrics.registry``.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from prometheus_client import CollectorRegistry, Counter, Gauge, Info

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
        self.drift_observers: list[PredictionObserver] = []  # the hook for the drift gauges to come

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
