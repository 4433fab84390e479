"""Shared fixtures: the real services the tests start live in ``tests/harness``."""

pytest_plugins = [
    "tests.harness.prometheus",
    "tests.harness.model_server",
    "tests.harness.mlflow_server",
    "tests.harness.haproxy",
    "tests.harness.nginx",
    "tests.harness.envoy",
    "tests.harness.postgres",
]
