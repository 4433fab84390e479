"""Load generator pieces that need no server: target URLs, options, summaries."""

from __future__ import annotations

import pytest

from canary.sim.loadgen import LoadGenerator, LoadStats, invocations_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/invocations"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/invocations"),
        (
            "http://127.0.0.1:8080/models/x/invocations",
            "http://127.0.0.1:8080/models/x/invocations",
        ),
        ("http://localhost:81/predict?v=2", "http://localhost:81/predict?v=2"),
        ("http://[::1]:81", "http://[::1]:81/invocations"),
    ],
)
def test_invocations_url(url: str, expected: str) -> None:
    assert invocations_url(url) == expected


@pytest.mark.parametrize("url", ["http://10.0.0.1:80", "http://example.com", "http://0.0.0.0:1"])
def test_non_loopback_targets_need_allow_remote(url: str) -> None:
    with pytest.raises(ValueError, match="non-loopback"):
        invocations_url(url)
    assert invocations_url(url, allow_remote=True).endswith("/invocations")


@pytest.mark.parametrize("url", ["127.0.0.1:80", "ftp://127.0.0.1/", "http:///x"])
def test_malformed_urls_are_rejected(url: str) -> None:
    with pytest.raises(ValueError, match="invalid URL"):
        invocations_url(url)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rps": 0},
        {"rps": -5},
        {"workers": 0},
        {"batch": 0},
        {"groups": {"a": -1.0}},
        {"groups": {"a": 0.0}},
    ],
)
def test_bad_options_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - one message per option
        LoadGenerator("http://127.0.0.1:1", **kwargs)  # type: ignore[arg-type]


def test_latency_quantiles_use_nearest_rank() -> None:
    stats = LoadStats(latencies_s=[float(n) for n in range(1, 101)])
    assert stats.latency_quantile(0.5) == 50.0
    assert stats.latency_quantile(0.99) == 99.0
    assert stats.latency_quantile(1.0) == 100.0
    assert LoadStats().latency_quantile(0.5) is None


def test_summary_is_json_ready() -> None:
    stats = LoadStats(sent=4, ok=3, failed=1, elapsed_s=2.5, window_s=2.0, latencies_s=[0.01, 0.02])
    stats.by_status.update({200: 3, 500: 1})
    summary = stats.summary()
    assert summary["achieved_rps"] == 2.0
    assert summary["by_status"] == {"200": 3, "500": 1}
    assert summary["latency_s"]["p50"] == 0.01
