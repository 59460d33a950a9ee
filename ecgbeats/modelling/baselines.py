"""Reference models on the same splits: what the LightGBM model has to beat."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ecgbeats.data.aami import CLASS_NAMES


def majority_class(x_train: pd.DataFrame, y_train: np.ndarray) -> DummyClassifier:
    return DummyClassifier(strategy="most_frequent").fit(x_train, y_train)


def logistic_regression(x_train: pd.DataFrame, y_train: np.ndarray, *, seed: int, max_iter: int = 500):
    """Multinomial logistic regression on standardised features; missing RR values get the median."""
    model = make_pipeline(
        SimpleImputer(strategy="median"),
        StandardScaler(),
        LogisticRegression(max_iter=max_iter, class_weight="balanced", random_state=seed),
    )
    return model.fit(x_train, y_train)


def full_proba(model, x: pd.DataFrame) -> np.ndarray:
    """Probabilities over all five classes, also for a model that never saw some of them."""
    proba = np.zeros((len(x), len(CLASS_NAMES)))
    proba[:, model.classes_] = model.predict_proba(x)
    return proba
