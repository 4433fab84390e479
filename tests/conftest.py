"""Shared fixtures: the real services the tests start live in ``tests/harness``."""

from hypothesis import HealthCheck, settings

# Property tests must not fail because a busy CI machine ran one example slowly: no per-
# example deadline, and no health check on slow data generation.
settings.register_profile("canary", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("canary")

pytest_plugins = [
    "tests.harness.prometheus",
    "tests.harness.model_server",
    "tests.harness.mlflow_server",
    "tests.harness.haproxy",
    "tests.harness.nginx",
    "tests.harness.envoy",
    "tests.harness.postgres",
]
