"""The references a tabular network must match: gradient-boosted trees and a one-hot linear model.

Why these two: on small tables gradient boosting (scikit-learn's HistGradientBoosting*, with the
categorical columns declared as such and NaN handled natively) is the usual winner, and a
logistic/ridge regression on the same one-hot features as the network shows whether the hidden
layers earn their keep. Both see the very rows, columns and slots the network sees.
"""

from __future__ import annotations

import numpy as np

from training.tabular_encoding import Schema, design_matrix

MAX_HGB_CATEGORIES = 255  # HistGradientBoosting's limit on a categorical feature's codes


def _hgb_features(schema: Schema, numbers: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, list[bool]]:
    x = np.concatenate([numbers.astype(np.float64), indices.astype(np.float64)], axis=1)
    categorical = [False] * len(schema.numeric) + [c.slots <= MAX_HGB_CATEGORIES for c in schema.categorical]
    return x, categorical


def fit_predict(task: str, schema: Schema, train: tuple, held_out: list[tuple], seed: int, classes: int = 0) -> dict[str, list[np.ndarray]]:
    """{"hgb": [...], "linear": [...]}: each reference fitted on `train` = (numbers, indices, y) and
    evaluated on every `held_out` (numbers, indices): probabilities over `classes`, or regression values."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression, Ridge

    numbers, indices, y = train
    x, categorical = _hgb_features(schema, numbers, indices)
    flags = categorical if any(categorical) else None
    if task == "classification":
        hgb = HistGradientBoostingClassifier(categorical_features=flags, random_state=seed)
        linear = LogisticRegression(max_iter=5000)
    else:
        hgb = HistGradientBoostingRegressor(categorical_features=flags, random_state=seed)
        linear = Ridge(alpha=1.0)
    hgb.fit(x, y)
    linear.fit(design_matrix(schema, numbers, indices), y)

    def answer(model, features):
        if task != "classification":
            return model.predict(features)
        return full_probabilities(model.predict_proba(features), model.classes_, classes)

    return {
        "hgb": [answer(hgb, _hgb_features(schema, n, i)[0]) for n, i in held_out],
        "linear": [answer(linear, design_matrix(schema, n, i)) for n, i in held_out],
    }


def full_probabilities(probabilities: np.ndarray, seen_classes: np.ndarray, classes: int) -> np.ndarray:
    """A reference's class probabilities widened to every class (a class absent from its training rows scores 0)."""
    out = np.zeros((len(probabilities), classes), np.float64)
    out[:, seen_classes] = probabilities
    return out
