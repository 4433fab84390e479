"""Raw counter samples -> cumulative snapshots, with a fake of our own QueryClient."""

from pathlib import Path

import pytest

from canary.analysis.snapshot import Counts
from canary.core.policy import load_policy
from canary.errors import MetricsError
from canary.metrics.prometheus import Arms, PrometheusSource, queries_for

ROOT = Path(__file__).resolve().parents[3]
POLICY = load_policy(ROOT / "config/policies/credit-risk.yaml")
ARMS = Arms(baseline="1", canary="2")


class FakeClient:
    """Answers each query from a table of metric name -> samples; may fail on demand."""

    def __init__(self):
        self.series: dict[str, list] = {}
        self.fail = False
        self.queries: list[str] = []
        self.times: list[float | None] = []

    def instant(self, query, at=None):
        self.queries.append(query)
        self.times.append(at)
        if self.fail:
            raise MetricsError("Prometheus unreachable")
        metric = query.split("{", 1)[0]
        out = []
        for labels, value in self.series.get(metric, []):
            if 'code=~"5.."' in query and not labels.get("code", "").startswith("5"):
                continue
            if 'correct="true"' in query and labels.get("correct") != "true":
                continue
            if 'predicted="1"' in query and labels.get("predicted") != "1":
                continue
            out.append((labels, value))
        return out


def requests(v1_ok, v1_err, v2_ok, v2_err):
    return [
        ({"version": "1", "code": "200"}, v1_ok),
        ({"version": "1", "code": "500"}, v1_err),
        ({"version": "2", "code": "200"}, v2_ok),
        ({"version": "2", "code": "500"}, v2_err),
    ]


def test_queries_add_the_version_matcher_to_each_selector():
    qs = queries_for(POLICY, ARMS)
    assert qs[0].promql == (
        'model_requests_total{model="credit-risk", code=~"5..", version=~"1|2"}'
    )
    assert {q.item for q in qs} == {"errors", "latency", "accuracy", "approval_parity"}
    with pytest.raises(ValueError, match="version"):
        Arms(baseline='1"} or vector(1)', canary="2")


def test_counts_are_cumulative_since_the_first_reading_and_survive_a_reset():
    client = FakeClient()
    source = PrometheusSource(client, combine=False)
    client.series["model_requests_total"] = requests(1000, 10, 0, 0)
    first = source.read(POLICY, ARMS, t=0, canary_weight=5, state=None)
    assert first.outcome == "ok"
    errors = first.snapshot.metrics["errors"]
    assert errors.baseline.counts == Counts(0, 0)

    client.series["model_requests_total"] = requests(1900, 20, 95, 5)
    second = source.read(POLICY, ARMS, t=15, canary_weight=5, state=first.state)
    errors = second.snapshot.metrics["errors"]
    assert errors.baseline.counts == Counts(10, 910)
    assert errors.canary.counts == Counts(5, 100)

    # the canary's server restarts: its counters start again from zero
    client.series["model_requests_total"] = requests(2800, 30, 40, 2)
    third = source.read(POLICY, ARMS, t=30, canary_weight=5, state=second.state)
    errors = third.snapshot.metrics["errors"]
    assert errors.canary.counts == Counts(7, 142)
    assert errors.baseline.counts == Counts(20, 1820)


def test_slices_and_histograms_are_built_per_arm():
    client = FakeClient()
    source = PrometheusSource(client, combine=False)
    state = source.read(POLICY, ARMS, t=0, canary_weight=5, state=None).state
    client.series["model_labelled_total"] = [
        ({"version": "1", "group": "a", "correct": "true"}, 90.0),
        ({"version": "1", "group": "a", "correct": "false"}, 10.0),
        ({"version": "2", "group": "b", "correct": "true"}, 4.0),
        ({"version": "2", "group": "b", "correct": "false"}, 1.0),
    ]
    client.series["model_request_duration_seconds_bucket"] = [
        ({"version": "1", "le": "0.1"}, 80.0),
        ({"version": "1", "le": "+Inf"}, 100.0),
        ({"version": "2", "le": "0.1"}, 3.0),
        ({"version": "2", "le": "+Inf"}, 5.0),
    ]
    snap = source.read(POLICY, ARMS, t=15, canary_weight=5, state=state).snapshot
    accuracy = snap.metrics["accuracy"]
    assert accuracy.baseline.slices == {"a": Counts(90, 100), "b": Counts(0, 0)}
    assert accuracy.canary.slices == {"a": Counts(0, 0), "b": Counts(4, 5)}
    latency = snap.metrics["latency"]
    assert latency.baseline.buckets.bounds == (0.1, float("inf"))
    assert latency.baseline.buckets.counts == (80.0, 100.0)
    assert latency.canary.buckets.counts == (3.0, 5.0)
    assert "approval_parity" not in snap.metrics  # no series at all: missing, not zero


def test_other_versions_and_series_without_the_slice_label_are_ignored():
    client = FakeClient()
    source = PrometheusSource(client, combine=False)
    state = source.read(POLICY, ARMS, t=0, canary_weight=5, state=None).state
    client.series["model_labelled_total"] = [
        ({"version": "3", "group": "a", "correct": "true"}, 50.0),
        ({"version": "2", "correct": "true"}, 50.0),
        ({"version": "2", "group": "a", "correct": "true"}, 2.0),
    ]
    snap = source.read(POLICY, ARMS, t=15, canary_weight=5, state=state).snapshot
    assert snap.metrics["accuracy"].canary.slices == {"a": Counts(2, 2)}


def test_a_failed_query_is_an_error_measurement_that_keeps_the_state():
    client = FakeClient()
    source = PrometheusSource(client, combine=False)
    client.series["model_requests_total"] = requests(10, 0, 0, 0)
    ok = source.read(POLICY, ARMS, t=0, canary_weight=5, state=None)
    client.fail = True
    failed = source.read(POLICY, ARMS, t=15, canary_weight=5, state=ok.state)
    assert failed.outcome == "error"
    assert failed.snapshot is None
    assert "unreachable" in str(failed.error)
    assert failed.state == ok.state


def test_every_query_of_a_tick_is_evaluated_at_the_same_settled_instant():
    client = FakeClient()
    source = PrometheusSource(client, settle=2.0, clock=lambda: 1000.0, combine=False)
    source.read(POLICY, ARMS, t=0, canary_weight=5, state=None)
    assert len(client.times) == len(queries_for(POLICY, ARMS)) == 7
    assert set(client.times) == {998.0}


def test_the_combined_query_reads_every_selector_in_one_round_trip():
    """The tick's seven selectors become one query; series come back tagged with the index
    of their selector, and the tag is stripped before they are counted."""

    class Tagged:
        def __init__(self):
            self.queries: list[str] = []

        def instant(self, query, at=None):
            self.queries.append(query)
            # selector 1 is the errors' total: one series per version
            return [
                ({"version": "1", "code": "200", "canary_selector": "1"}, 10.0 * len(self.queries)),
                ({"version": "2", "code": "200", "canary_selector": "1"}, 3.0 * len(self.queries)),
                ({"version": "2", "canary_selector": "99"}, 5.0),  # not ours: ignored
            ]

    client = Tagged()
    source = PrometheusSource(client)
    first = source.read(POLICY, ARMS, t=0, canary_weight=5, state=None)
    second = source.read(POLICY, ARMS, t=15, canary_weight=5, state=first.state)
    assert len(client.queries) == 2
    query = client.queries[0]
    assert query.count("label_replace(") == len(queries_for(POLICY, ARMS))
    assert query.count(" or ") == len(queries_for(POLICY, ARMS)) - 1
    errors = second.snapshot.metrics["errors"]
    assert errors.baseline.counts == Counts(0, 10)
    assert errors.canary.counts == Counts(0, 3)
    assert "canary_selector" not in str(second.state)
