"""Build the router a policy asks for: one place that knows every kind of proxy.

Adding a proxy is one module in ``canary/traffic`` and one branch here.
"""

from __future__ import annotations

from canary.core import policy
from canary.traffic.base import Router
from canary.traffic.envoy import EnvoyRouter
from canary.traffic.haproxy import HAProxyRouter
from canary.traffic.nginx import NginxRouter

RouterConfig = policy.HAProxyRouter | policy.NginxRouter | policy.EnvoyRouter


def router_for(config: RouterConfig) -> Router:
    """The router for a policy's ``router:`` section."""
    if isinstance(config, policy.HAProxyRouter):
        return HAProxyRouter(
            config.runtime_api,
            config.backend,
            champion_server=config.champion_server,
            canary_server=config.canary_server,
            timeout=config.timeout,
        )
    if isinstance(config, policy.NginxRouter):
        return NginxRouter(
            config.upstream,
            config.include_file,
            nginx=config.nginx,
            conf=config.conf,
            prefix=config.prefix,
            timeout=config.timeout,
        )
    if isinstance(config, policy.EnvoyRouter):
        return EnvoyRouter(
            config.config_dir,
            config.route_config,
            virtual_host=config.virtual_host,
            champion_cluster=config.champion_cluster,
            canary_cluster=config.canary_cluster,
            timeout=config.timeout,
            # The admin address lets the router confirm Envoy loaded a change and read back
            # what Envoy runs; without it the files are the record.
            admin=config.admin,
        )
    raise TypeError(f"no router for {type(config).__name__}")
