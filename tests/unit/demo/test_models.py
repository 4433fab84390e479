"""The demo's pipeline: its encoder, and that it scores rows however JSON delivers them."""

from __future__ import annotations

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pytest

from canary.demo.data import FEATURES, UNSEEN_EMPLOYMENT
from canary.demo.models import ApplicationEncoder, inputs, predict


def rows(*kinds: str) -> np.ndarray:
    return np.array([[40.0, 0.2, 3.0, 1.0, 0.8, kind] for kind in kinds], dtype=object)


def test_the_encoder_one_hot_encodes_the_employment_type():
    encoder = ApplicationEncoder().fit(rows("salaried", "retired", "self_employed"))
    assert encoder.categories_ == ["retired", "salaried", "self_employed"]
    out = encoder.transform(rows("self_employed", "retired"))
    assert out.shape == (2, 5 + 3)
    assert out[0, 5:].tolist() == [0.0, 0.0, 1.0]
    assert out[1, 5:].tolist() == [1.0, 0.0, 0.0]
    assert out[0, :5].tolist() == [40.0, 0.2, 3.0, 1.0, 0.8]


def test_the_encoder_refuses_a_type_it_never_saw_and_a_wrong_shape():
    encoder = ApplicationEncoder().fit(rows("salaried"))
    with pytest.raises(ValueError, match=r"\['gig'\] was never seen"):
        encoder.transform(rows("salaried", "gig"))
    with pytest.raises(ValueError, match="expected 6 columns"):
        encoder.transform(np.ones((1, 4), dtype=object))
    with pytest.raises(ValueError, match="2-D"):
        encoder.transform(np.ones(6, dtype=object))


def test_numbers_as_json_sends_them_score_the_same(trained):
    model = trained.models["2"]
    live = trained.data.live
    frame = live[live["employment_type"] != UNSEEN_EMPLOYMENT].head(300)
    expected = predict(model, frame)
    # JSON gives ints for whole numbers and the server builds an object array of values
    as_json = [
        [int(v) if isinstance(v, float) and v.is_integer() else v for v in row]
        for row in inputs(frame).to_numpy(dtype=object).tolist()
    ]
    got = model.predict(np.array(as_json, dtype=object))
    assert (got == expected).all()
    # and a DataFrame in signature order (what MLflow's pyfunc wrapper passes) too
    assert (model.predict(pd.DataFrame(as_json, columns=list(FEATURES))) == expected).all()
