"""The Envoy route and endpoint documents the router writes."""

from __future__ import annotations

import pytest

from canary.errors import RouterError
from canary.traffic.base import Address, Weights
from canary.traffic.envoy import EnvoyRouter, cluster_weights, endpoints_document, route_document


def test_route_document_round_trips_weights() -> None:
    document = route_document("credit_risk", "default", {"champion": 9, "canary": 1})
    route = document["resources"][0]
    assert route["@type"].endswith("RouteConfiguration")
    assert route["name"] == "credit_risk"
    assert cluster_weights(route, "default") == {"champion": 9, "canary": 1}


def test_version_is_a_function_of_the_content() -> None:
    # The same state always has the same version (a repeat changes nothing in Envoy), and a
    # different state a different one (so the router can see Envoy load it).
    a = route_document("r", "default", {"champion": 9, "canary": 1})
    b = route_document("r", "default", {"champion": 9, "canary": 1})
    c = route_document("r", "default", {"champion": 1, "canary": 1})
    assert a["version_info"] == b["version_info"] != c["version_info"]
    e1 = endpoints_document("canary", Address.parse("127.0.0.1:1"))
    e2 = endpoints_document("canary", Address.parse("127.0.0.1:2"))
    assert e1["version_info"] != e2["version_info"]


def test_endpoints_document_names_the_address() -> None:
    resource = endpoints_document("canary", Address.parse("[::1]:8080"))["resources"][0]
    assert resource["cluster_name"] == "canary"
    socket = resource["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert socket == {"address": "::1", "port_value": 8080}


def test_missing_virtual_host_is_an_error() -> None:
    route = route_document("r", "default", {"champion": 1, "canary": 0})["resources"][0]
    with pytest.raises(RouterError, match="virtual host 'other'"):
        cluster_weights(route, "other")


def test_file_mode_round_trip_without_envoy(tmp_path) -> None:
    # Without an admin address the files are the record: apply writes, read parses.
    router = EnvoyRouter(tmp_path, "app")
    router.set_backend("champion", Address.parse("127.0.0.1:1"))
    with pytest.raises(RouterError, match="has no endpoint"):
        router.apply(Weights(canary=10))
    router.set_backend("canary", Address.parse("127.0.0.1:2"))
    assert router.apply(Weights(canary=10)) == Weights(canary=10)
    assert router.read() == Weights(canary=10)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "app.rds.json",
        "canary.eds.json",
        "champion.eds.json",
    ]


def test_host_names_and_bad_names_are_refused(tmp_path) -> None:
    router = EnvoyRouter(tmp_path, "app")
    with pytest.raises(RouterError, match="IP address"):
        router.set_backend("canary", Address.parse("localhost:1"))
    with pytest.raises(ValueError, match="route config"):
        EnvoyRouter(tmp_path, "../etc/passwd")
    with pytest.raises(ValueError, match="cluster"):
        EnvoyRouter(tmp_path, "app", canary_cluster="a b")
    with pytest.raises(ValueError, match="different"):
        EnvoyRouter(tmp_path, "app", canary_cluster="champion")
