"""What the simulated server exports, checked in process (no HTTP, no Prometheus)."""

from __future__ import annotations

import json

import pytest

from canary.sim.config import SimConfig
from canary.sim.metrics import MAX_GROUPS, ModelMetrics, TooManyGroupsError
from canary.sim.model_server import ModelApp
from tests.harness.model_server import metric_sum

FAST = {"latency_ms": 0.0, "jitter_ms": 0.0}


def app(**changes: object) -> ModelApp:
    return ModelApp(SimConfig(version="2", seed=11, **{**FAST, **changes}))  # type: ignore[arg-type]


def exported(a: ModelApp, name: str, **labels: str) -> float:
    return metric_sum(a.exposition().decode(), name, **labels)


def invoke(a: ModelApp, data: object) -> tuple[int, dict[str, object]]:
    return a.predict(json.dumps(data).encode(), started=0.0)


def test_every_series_exists_at_zero_before_the_first_request() -> None:
    text = app(group_positive_rate={"a": 0.3}, group_accuracy={"b": 0.9}).exposition().decode()
    for line in [
        'model_requests_total{code="200",model="credit-risk",version="2"} 0.0',
        'model_requests_total{code="500",model="credit-risk",version="2"} 0.0',
        'model_request_duration_seconds_count{model="credit-risk",version="2"} 0.0',
        'model_predictions_total{group="a",model="credit-risk",predicted="1",version="2"} 0.0',
        'model_predictions_total{group="b",model="credit-risk",predicted="0",version="2"} 0.0',
        'model_labelled_total{correct="true",group="a",model="credit-risk",version="2"} 0.0',
        'model_labelled_total{correct="false",group="b",model="credit-risk",version="2"} 0.0',
    ]:
        assert line in text


def test_latency_buckets_span_5ms_to_10s() -> None:
    text = app().exposition().decode()
    assert 'le="0.005"' in text
    assert 'le="10.0"' in text
    assert 'le="+Inf"' in text


def test_predictions_and_immediate_labels_are_counted_per_group() -> None:
    a = app(group_positive_rate={"a": 1.0, "b": 0.0}, group_accuracy={"a": 1.0, "b": 0.0})
    for group in ["a"] * 30 + ["b"] * 20:
        status, payload = invoke(a, {"group": group})
        assert status == 200
        assert payload == {"predictions": [1 if group == "a" else 0]}
    assert exported(a, "model_predictions_total", group="a", predicted="1") == 30
    assert exported(a, "model_predictions_total", group="a", predicted="0") == 0
    assert exported(a, "model_predictions_total", group="b", predicted="0") == 20
    assert exported(a, "model_labelled_total", group="a", correct="true") == 30
    assert exported(a, "model_labelled_total", group="b", correct="false") == 20


def test_a_batch_request_makes_one_prediction_per_record() -> None:
    a = app()
    status, payload = invoke(a, {"dataframe_records": [{"group": "a"}] * 7})
    assert status == 200
    assert len(payload["predictions"]) == 7  # type: ignore[arg-type]
    assert exported(a, "model_predictions_total", group="a") == 7


def test_failed_requests_make_no_predictions_and_no_labels() -> None:
    a = app(error_rate=1.0)
    status, payload = invoke(a, {"group": "a"})
    assert status == 500
    assert payload["error_code"] == "INTERNAL_ERROR"
    assert exported(a, "model_predictions_total") == 0
    assert exported(a, "model_labelled_total") == 0


def test_delayed_labels_wait_in_the_queue() -> None:
    a = app(label_delay_s=3600.0)
    invoke(a, {"group": "a"})
    assert exported(a, "model_labelled_total") == 0
    assert len(a.labels) == 1


def test_bad_body_is_a_400_without_new_series() -> None:
    a = app()
    status, payload = invoke(a, {"group": "a b"})
    assert status == 400
    assert "invalid group" in str(payload["message"])
    assert 'group="a b"' not in a.exposition().decode()


def test_group_count_is_capped() -> None:
    metrics = ModelMetrics("credit-risk", "2")
    for n in range(MAX_GROUPS):
        metrics.add_group(f"g{n}")
    metrics.add_group("g0")  # a known group is always fine
    with pytest.raises(TooManyGroupsError):
        metrics.add_group("one-too-many")


def test_metrics_reject_names_that_would_break_a_query() -> None:
    with pytest.raises(ValueError, match="model name"):
        ModelMetrics('x"}', "2")
    with pytest.raises(ValueError, match="group name"):
        ModelMetrics("m", "2", groups=['a"} or vector(1)'])
