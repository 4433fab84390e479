"""router_for builds the router a policy's ``router:`` section describes."""

from __future__ import annotations

from pathlib import Path

from pydantic import TypeAdapter

from canary.core import policy
from canary.traffic.envoy import EnvoyRouter
from canary.traffic.factory import router_for
from canary.traffic.haproxy import HAProxyRouter
from canary.traffic.nginx import NginxRouter

ROUTER = TypeAdapter(policy.Router)


def test_haproxy() -> None:
    config = ROUTER.validate_python(
        {
            "type": "haproxy",
            "runtime_api": "unix:/run/haproxy/admin.sock",
            "backend": "credit",
            "canary_server": "next",
            "timeout": "2s",
        }
    )
    router = router_for(config)
    assert isinstance(router, HAProxyRouter)
    assert router.backend == "credit"
    assert router.servers == {"champion": "champion", "canary": "next"}
    assert str(router.channel) == "unix:/run/haproxy/admin.sock"


def test_nginx() -> None:
    config = ROUTER.validate_python(
        {
            "type": "nginx",
            "upstream": "credit",
            "include_file": "/etc/nginx/canary/credit.conf",
            "conf": "/etc/nginx/nginx.conf",
            "nginx": "/usr/sbin/nginx",
        }
    )
    router = router_for(config)
    assert isinstance(router, NginxRouter)
    assert router.include_file == Path("/etc/nginx/canary/credit.conf")
    assert router._nginx == ["/usr/sbin/nginx", "-c", "/etc/nginx/nginx.conf"]


def test_envoy() -> None:
    config = ROUTER.validate_python(
        {
            "type": "envoy",
            "config_dir": "/etc/envoy/xds",
            "route_config": "credit",
            "canary_cluster": "credit_next",
        }
    )
    router = router_for(config)
    assert isinstance(router, EnvoyRouter)
    assert router.route_file == Path("/etc/envoy/xds/credit.rds.json")
    assert router.endpoints_file("canary") == Path("/etc/envoy/xds/credit_next.eds.json")
