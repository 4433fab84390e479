"""The model every demo version is: one scikit-learn pipeline, trained on its own data.

The same recipe for every version, so that what differs between versions is only the data
they were trained on, which is the point of the demo. Gradient-boosted trees learn the
interaction between credit history and rent payments that separates the two groups when
they see both.

Why a small encoder of ours instead of a ``ColumnTransformer`` with a ``OneHotEncoder``:
scoring one application through those costs about 5 ms of CPU (pandas indexing and joblib
machinery on every call), this pipeline about 0.3 ms, and the demo scores a few hundred
applications a second on two cores. Like scikit-learn's encoder by default, ours refuses an
employment type it never saw, which is why such an application fails its request (see
``canary.demo.data``). Pure: CPU only, no I/O.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
from sklearn.base import BaseEstimator, TransformerMixin  # type: ignore[import-untyped]
from sklearn.ensemble import GradientBoostingClassifier  # type: ignore[import-untyped]
from sklearn.pipeline import Pipeline  # type: ignore[import-untyped]

from canary.demo.data import CATEGORICAL_FEATURES, FEATURES, LABEL, NUMERIC_FEATURES

if FEATURES[-1:] != CATEGORICAL_FEATURES:  # the encoder reads the category from the last column
    raise ImportError("canary.demo.data.FEATURES must end with the one categorical feature")

# 100 trees of depth 3: about a second to train on 16,000 rows, 0.3 ms to score one row.
N_ESTIMATORS = 100
MAX_DEPTH = 3


class ApplicationEncoder(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Rows in ``FEATURES`` order (the employment type last) to floats, that type one-hot.

    Takes a DataFrame or any 2-D array of those columns (numbers may arrive as strings or
    ints from JSON). An employment type not seen in ``fit`` raises ValueError.
    """

    def fit(self, x: Any, y: Any = None) -> ApplicationEncoder:
        rows = _rows(x)
        self.categories_ = sorted({str(v) for v in rows[:, -1]})
        self.n_features_in_ = rows.shape[1]
        return self

    def transform(self, x: Any) -> np.ndarray:
        rows = _rows(x)
        if rows.shape[1] != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} columns, got {rows.shape[1]}")
        kinds = rows[:, -1].astype(str)
        unknown = sorted(set(kinds.tolist()) - set(self.categories_))
        if unknown:
            raise ValueError(f"employment_type {unknown} was never seen in training")
        numbers = rows[:, :-1].astype(np.float64)
        onehot = (kinds[:, None] == np.asarray(self.categories_)[None, :]).astype(np.float64)
        result: np.ndarray = np.hstack([numbers, onehot])
        return result


def _rows(x: Any) -> np.ndarray:
    rows = np.asarray(x, dtype=object)
    if rows.ndim != 2:
        raise ValueError("expected a 2-D table of applications")
    return rows


# MLflow saves scikit-learn models with skops, which loads only the types it can audit and
# those named as trusted: our encoder, and the node table of scikit-learn's trees.
TRUSTED_TYPES: tuple[str, ...] = (
    f"{ApplicationEncoder.__module__}.{ApplicationEncoder.__qualname__}",
    "sklearn.tree._tree.Tree",
)


def pipeline(seed: int) -> Any:
    """An untrained pipeline: the encoder, then the boosted trees."""
    trees = GradientBoostingClassifier(
        n_estimators=N_ESTIMATORS, max_depth=MAX_DEPTH, random_state=seed
    )
    return Pipeline([("encode", ApplicationEncoder()), ("trees", trees)])


def inputs(frame: pd.DataFrame) -> pd.DataFrame:
    """The model's input columns, in order (the group and the label are not inputs)."""
    return frame[list(FEATURES)].astype({name: "float64" for name in NUMERIC_FEATURES})


def train(frame: pd.DataFrame, seed: int) -> Any:
    """A pipeline fitted on ``frame``'s applications and their repayment labels."""
    model = pipeline(seed)
    model.fit(inputs(frame).to_numpy(dtype=object), frame[LABEL].to_numpy())
    return model


def predict(model: Any, frame: pd.DataFrame) -> np.ndarray:
    """0/1 predictions (1: approve, the applicant is predicted to repay)."""
    result: np.ndarray = np.asarray(
        model.predict(inputs(frame).to_numpy(dtype=object)), dtype=np.int64
    )
    return result
