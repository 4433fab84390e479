"""The configuration files the demo writes: HAProxy's, Prometheus's and the rollout policy.

Pure text and data, built from validated ports and names, so they can be read and tested
without starting anything. Everything listens on and points at 127.0.0.1 only.

The policy is the one a team would write for this model, with the time scale shrunk so a
whole rollout takes about a minute: a tick every second, three short steps, and tolerances
sized so the minimum sample before promotion is reached within that minute at a few hundred
requests a second (``docs/statistics.md``, "Minimum sample before promotion").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from canary.core import names
from canary.core.policy import Policy

LOOPBACK = "127.0.0.1"
BACKEND = "credit_risk"
PROMETHEUS_JOB = "canary-demo"
LABEL_DELAY_S = 2.0


def _port(port: int) -> int:
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is outside 1-65535")
    return port


def haproxy_config(*, port: int, runtime_port: int, champion_port: int) -> str:
    """HAProxy in front of the model: backend ``credit_risk`` with the champion server.

    The canary server is added at run time by the daemon's router (``add server``); the
    runtime API listens on TCP so no unix socket path length limit applies.
    """
    return f"""\
global
  stats socket ipv4@{LOOPBACK}:{_port(runtime_port)} level admin
  maxconn 2048

defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s

frontend main
  bind {LOOPBACK}:{_port(port)}
  default_backend {BACKEND}

backend {BACKEND}
  balance roundrobin
  server champion {LOOPBACK}:{_port(champion_port)} weight 1
"""


def prometheus_config(ports: Sequence[int], interval: str = "1s") -> str:
    """Scrape every model server the demo may run (champion and the daemon's port range)."""
    targets = [f"{LOOPBACK}:{_port(p)}" for p in ports]
    config = {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "evaluation_interval": interval,
        },
        "scrape_configs": [
            {"job_name": PROMETHEUS_JOB, "static_configs": [{"targets": targets}]},
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


def scoring_command(python: str) -> list[str]:
    """The ``serving.start`` template: our scoring server, for any version, on any port."""
    return [
        python,
        "-m",
        "canary.demo.scoring_server",
        "--model",
        "{model}",
        "--version",
        "{version}",
        "--port",
        "{port}",
        "--label-delay",
        f"{LABEL_DELAY_S:g}",
        "--log-level",
        "warning",
    ]


def demo_policy(
    *, model: str, python: str, runtime_port: int, first_port: int, last_port: int
) -> dict[str, Any]:
    """The rollout policy of the demo model, as the YAML mapping ``canary run`` reads."""
    names.check(names.MODEL_NAME, model, "model name")
    selector = f'model="{model}"'
    return {
        "model": model,
        "trigger": {"alias": "challenger"},
        "champion_alias": "champion",
        "serving": {
            "address": f"{LOOPBACK}:{{port}}",
            "start": scoring_command(python),
            "health": "http://{address}/health",
            "ports": {"first": _port(first_port), "last": _port(last_port)},
            "ready_timeout": "90s",
        },
        "router": {
            "type": "haproxy",
            "runtime_api": f"{LOOPBACK}:{_port(runtime_port)}",
            "backend": BACKEND,
        },
        "steps": [
            {"weight": 10, "min_duration": "15s"},
            {"weight": 25, "min_duration": "10s"},
            {"weight": 50, "min_duration": "10s"},
        ],
        "analysis": {
            "interval": "1s",
            "alpha": 0.05,
            "max_duration": "5m",
            "on_query_error": {"consecutive_limit": 10, "then": "rollback"},
            "on_no_data": {"after": "1m", "then": "rollback"},
            "metrics": [
                {
                    "name": "errors",
                    "kind": "ratio",
                    "events": f'model_requests_total{{{selector}, code=~"5.."}}',
                    "total": f"model_requests_total{{{selector}}}",
                    "worse_when": "higher",
                    # Errors are rare events: up to 1.5 times the champion's rate is
                    # tolerated, so "no worse" can be shown from a few hundred of them.
                    "tolerance": {"relative": 0.5},
                },
                {
                    "name": "latency",
                    "kind": "histogram",
                    "buckets": f"model_request_duration_seconds_bucket{{{selector}}}",
                    "worse_when": "higher",
                    # A p99 check needs many requests to say "no worse" (about 1% of them
                    # count); three times the champion's share of slow requests is the
                    # regression it is sized to catch within the demo's minute.
                    "tolerance": {"relative": 2.0},
                },
                {
                    "name": "accuracy",
                    "kind": "ratio",
                    "events": f'model_labelled_total{{{selector}, correct="true"}}',
                    "total": f"model_labelled_total{{{selector}}}",
                    "worse_when": "lower",
                    "slice_by": "group",
                    "tolerance": {"absolute": 0.05},
                },
            ],
            "fairness": [
                {
                    "name": "approval_parity",
                    "positives": f'model_predictions_total{{{selector}, predicted="1"}}',
                    "total": f"model_predictions_total{{{selector}}}",
                    "slice_by": "group",
                    "min_ratio": 0.8,
                }
            ],
        },
        "offline_gate": {
            "accuracy": {"min": 0.75, "max_drop_vs_champion": 0.02},
            "fairness_dp_difference": {"max": 0.10},
        },
        "notify": {"slack": {}},
    }


def policy_yaml(policy: dict[str, Any]) -> str:
    """The policy as YAML, after checking it is one ``canary run`` accepts."""
    Policy.model_validate(policy)
    return yaml.safe_dump(policy, sort_keys=False)
