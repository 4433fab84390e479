"""The metric-name extractor the dashboard and alert tests rely on."""

import pytest

from tests.unit.deploy.promql_names import metric_names, template_query_names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('up{job="canary"} == 0', {"up"}),
        ("(max(canary_leader) or vector(0)) < 1", {"canary_leader"}),
        (
            "histogram_quantile(0.99, sum by (le) "
            "(rate(canary_tick_duration_seconds_bucket[$__rate_interval])))",
            {"canary_tick_duration_seconds_bucket"},
        ),
        (
            "changes(canary_canary_weight_percent[1h]) == 0\n"
            "and on (model, rollout) (canary_canary_weight_percent offset 1h)",
            {"canary_canary_weight_percent"},
        ),
        (
            'sum(increase(a_total{outcome="ok", x=~"by(z)"}[5m])) == 0 and on () '
            'sum(b{phase=~"p|q"}) > bool 0',
            {"a_total", "b"},
        ),
        ('count_values("canary_fake", foo:bar_rate5m) * 1e3', {"foo:bar_rate5m"}),
    ],
)
def test_metric_names(expr, names):
    assert metric_names(expr) == names


def test_template_query_names():
    query = "label_values(canary_canary_weight_percent, model)"
    assert template_query_names(query) == {"canary_canary_weight_percent"}
