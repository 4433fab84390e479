"""The files the demo writes: a policy canary accepts, and proxy and scrape configs on
loopback only."""

from __future__ import annotations

import pytest
import yaml

from canary.core.policy import parse_policy
from canary.demo.configs import (
    BACKEND,
    demo_policy,
    haproxy_config,
    policy_yaml,
    prometheus_config,
    scoring_command,
)


def policy() -> dict:
    return demo_policy(
        model="credit-risk",
        python="/venv/bin/python",
        runtime_port=9101,
        first_port=18000,
        last_port=18003,
    )


def test_the_policy_is_valid_and_watches_what_the_scoring_server_exports():
    parsed = parse_policy(policy_yaml(policy()), "demo.yaml")
    assert parsed.model == "credit-risk"
    assert parsed.router.runtime_api == "127.0.0.1:9101"
    assert [s.weight for s in parsed.steps] == [10, 25, 50]
    names = {m.name for m in parsed.analysis.metrics} | {f.name for f in parsed.analysis.fairness}
    assert names == {"errors", "latency", "accuracy", "approval_parity"}
    accuracy = next(m for m in parsed.analysis.metrics if m.name == "accuracy")
    assert accuracy.slice_by == "group"
    assert parsed.analysis.fairness[0].min_ratio == 0.8
    assert set(parsed.offline_gate) == {"accuracy", "fairness_dp_difference"}
    assert parsed.serving.start[:3] == ["/venv/bin/python", "-m", "canary.demo.scoring_server"]


def test_the_policy_refuses_a_bad_model_name():
    with pytest.raises(ValueError, match="model name"):
        demo_policy(model='x"}', python="p", runtime_port=1, first_port=2, last_port=3)


def test_the_serving_template_only_uses_the_placeholders_canary_fills():
    command = scoring_command("/venv/bin/python")
    fields = {part for part in command if part.startswith("{")}
    assert fields == {"{model}", "{version}", "{port}"}


def test_haproxy_config_binds_loopback_and_names_the_backend():
    text = haproxy_config(port=8080, runtime_port=9101, champion_port=7001)
    assert "stats socket ipv4@127.0.0.1:9101 level admin" in text
    assert "bind 127.0.0.1:8080" in text
    assert f"backend {BACKEND}" in text
    assert "server champion 127.0.0.1:7001 weight 1" in text
    with pytest.raises(ValueError, match="outside"):
        haproxy_config(port=0, runtime_port=1, champion_port=2)


def test_prometheus_scrapes_every_model_server_each_second():
    config = yaml.safe_load(prometheus_config([7001, 18000, 18001]))
    assert config["global"]["scrape_interval"] == "1s"
    (job,) = config["scrape_configs"]
    assert job["static_configs"][0]["targets"] == [
        "127.0.0.1:7001",
        "127.0.0.1:18000",
        "127.0.0.1:18001",
    ]
