"""Envoy: weighted clusters in files that Envoy watches (file-based RDS and EDS).

The router owns two kinds of files in ``config_dir``, each a DiscoveryResponse in JSON:

* ``<route_config>.rds.json``: one RouteConfiguration with one virtual host whose single
  route (prefix ``/``) splits requests between the champion and canary clusters with
  ``weighted_clusters``;
* ``<cluster>.eds.json``: the ClusterLoadAssignment of each arm's cluster (its address).

Envoy's bootstrap points at them with ``path_config_source`` (see the test harness for a
complete bootstrap)::

    rds: {route_config_name: credit_risk,
          config_source: {path_config_source: {path: <dir>/credit_risk.rds.json}}}
    clusters:
    - name: champion
      type: EDS
      eds_cluster_config:
        eds_config: {path_config_source: {path: <dir>/champion.eds.json}}

Envoy reloads a watched file when a new one is *moved* onto its name, so every change is
written to a temporary file in the same directory and renamed into place. Each file's
``version_info`` is a hash of its content, so the same state always has the same version.
When the admin address is known the router polls Envoy until it runs what the file says
(the route's weights in ``/config_dump``, the cluster's hosts in ``/clusters``; not the
version, which Envoy leaves alone when an update's content equals what it runs), or until
Envoy counts the update as rejected, then returns. A change Envoy does not take is undone
by moving the previous file back.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from canary.core import names
from canary.errors import RouterError
from canary.log import get_logger
from canary.traffic.base import Address, Arm, Weights
from canary.traffic.files import read_optional, replace_file

log = get_logger(__name__)

MAX_WEIGHT = 10_000
"""Basis points: every percentage a policy can write is exact, reduced to lowest terms."""

_ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
_ENDPOINTS_TYPE = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
_POLL_INTERVAL = 0.005


def route_document(
    route_config: str, virtual_host: str, clusters: dict[str, int]
) -> dict[str, Any]:
    """The RDS file: one route sending every request to the weighted clusters."""
    resource = {
        "@type": _ROUTE_TYPE,
        "name": route_config,
        "virtual_hosts": [
            {
                "name": virtual_host,
                "domains": ["*"],
                "routes": [
                    {
                        "match": {"prefix": "/"},
                        "route": {
                            "weighted_clusters": {
                                "clusters": [
                                    {"name": name, "weight": weight}
                                    for name, weight in clusters.items()
                                ]
                            }
                        },
                    }
                ],
            }
        ],
    }
    return _versioned(resource)


def endpoints_document(cluster: str, address: Address) -> dict[str, Any]:
    """The EDS file of one arm's cluster: a single endpoint at ``address``."""
    resource = {
        "@type": _ENDPOINTS_TYPE,
        "cluster_name": cluster,
        "endpoints": [
            {
                "lb_endpoints": [
                    {
                        "endpoint": {
                            "address": {
                                "socket_address": {
                                    "address": address.host,
                                    "port_value": address.port,
                                }
                            }
                        }
                    }
                ]
            }
        ],
    }
    return _versioned(resource)


def _versioned(resource: dict[str, Any]) -> dict[str, Any]:
    canonical = json.dumps(resource, sort_keys=True, separators=(",", ":"))
    version = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    return {"version_info": version, "resources": [resource]}


def _render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2) + "\n"


def cluster_weights(route: dict[str, Any], virtual_host: str) -> dict[str, int]:
    """Cluster name → weight of the first weighted route of ``virtual_host``."""
    for host in route.get("virtual_hosts", []):
        if host.get("name") != virtual_host:
            continue
        for entry in host.get("routes", []):
            weighted = entry.get("route", {}).get("weighted_clusters")
            if weighted is not None:
                return {c["name"]: int(c.get("weight", 0)) for c in weighted.get("clusters", [])}
    raise RouterError(f"route configuration has no weighted route in virtual host {virtual_host!r}")


class EnvoyRouter:
    """Champion and canary as two Envoy clusters behind one weighted route, via files."""

    kind = "envoy"

    def __init__(
        self,
        config_dir: str | os.PathLike[str],
        route_config: str,
        *,
        virtual_host: str = "default",
        champion_cluster: str = "champion",
        canary_cluster: str = "canary",
        timeout: float = 10.0,
        admin: str | None = None,
    ) -> None:
        self.config_dir = Path(config_dir)
        self.route_config = names.check(names.PROXY_NAME, route_config, "Envoy route config")
        self.virtual_host = names.check(names.PROXY_NAME, virtual_host, "Envoy virtual host")
        self.clusters: dict[Arm, str] = {
            "champion": names.check(names.PROXY_NAME, champion_cluster, "Envoy cluster name"),
            "canary": names.check(names.PROXY_NAME, canary_cluster, "Envoy cluster name"),
        }
        if champion_cluster == canary_cluster:
            raise ValueError("champion and canary must be different Envoy clusters")
        self.timeout = timeout
        self.admin_url = f"http://{Address.parse(admin)}" if admin is not None else None
        self._http: httpx.Client | None = None
        self._log = log.bind(router=self.kind, route_config=route_config)

    @property
    def route_file(self) -> Path:
        return self.config_dir / f"{self.route_config}.rds.json"

    def endpoints_file(self, arm: Arm) -> Path:
        return self.config_dir / f"{self.clusters[arm]}.eds.json"

    # --- Router ---------------------------------------------------------------------------

    def check(self) -> None:
        if not self.config_dir.is_dir() or not os.access(self.config_dir, os.W_OK | os.X_OK):
            raise RouterError(f"Envoy config dir {self.config_dir} is not a writable directory")
        if self.admin_url is None:
            return
        ready = self._admin("/ready")
        if ready.strip() != "LIVE":
            raise RouterError(f"Envoy at {self.admin_url} is not live: {ready.strip()!r}")
        if self._live_route() is None:
            raise RouterError(
                f"Envoy at {self.admin_url} has no route configuration {self.route_config!r}: "
                f"its bootstrap must read {self.route_file} through RDS"
            )

    def read(self) -> Weights:
        if self.admin_url is not None:
            live = self._live_route()
            if live is None:
                raise RouterError(f"Envoy has no route configuration {self.route_config!r}")
            route = live[1]
        else:
            resources = self._load(self.route_file).get("resources") or [{}]
            route = resources[0]
        return self._weights(cluster_weights(route, self.virtual_host))

    def apply(self, weights: Weights) -> Weights:
        champion_units, canary_units = weights.to_units(MAX_WEIGHT)
        wanted: dict[Arm, int] = {"champion": champion_units, "canary": canary_units}
        for arm, units in wanted.items():
            if units > 0 and not self._has_endpoint(arm):
                raise RouterError(
                    f"Envoy cluster {self.clusters[arm]!r} ({arm}) has no endpoint: "
                    f"set_backend({arm!r}, address) first"
                )
        clusters = {self.clusters[arm]: units for arm, units in wanted.items()}
        document = route_document(self.route_config, self.virtual_host, clusters)
        changed = self._install(
            self.route_file, document, lambda: self._live_weights() == clusters, "rds"
        )
        applied = Weights.from_units(champion_units, canary_units)
        if changed:
            self._log.info(
                "router.weights_applied",
                champion=applied.champion,
                canary=applied.canary,
                units=[champion_units, canary_units],
            )
        return applied

    def set_backend(self, arm: Arm, address: Address) -> None:
        if address.ip is None:
            raise RouterError(
                f"Envoy EDS endpoints take an IP address, not the host name {address.host!r}"
            )
        document = endpoints_document(self.clusters[arm], address)
        cluster = self.clusters[arm]
        if self._install(
            self.endpoints_file(arm),
            document,
            lambda: self._endpoints_applied(cluster, address),
            "eds",
            cluster=cluster,
        ):
            self._log.info("router.backend_moved", arm=arm, cluster=cluster, address=str(address))

    # --- files ----------------------------------------------------------------------------

    def _load(self, path: Path) -> dict[str, Any]:
        try:
            document: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise RouterError(f"cannot read Envoy config {path}: {exc}") from exc
        return document

    def _has_endpoint(self, arm: Arm) -> bool:
        path = self.endpoints_file(arm)
        if not path.exists():
            return False
        resources = self._load(path).get("resources", [])
        return any(
            group.get("lb_endpoints")
            for resource in resources
            for group in resource.get("endpoints", [])
        )

    def _install(
        self,
        path: Path,
        document: dict[str, Any],
        applied: Callable[[], bool],
        kind: str,
        cluster: str | None = None,
    ) -> bool:
        """Move ``document`` into ``path`` unless Envoy already runs it; confirm; undo on error.

        Returns whether a file was written.
        """
        content = _render(document)
        version = str(document["version_info"])
        try:
            previous = read_optional(path)
        except OSError as exc:
            raise RouterError(f"cannot read Envoy config {path}: {exc}") from exc
        if previous == content and (self.admin_url is None or applied()):
            return False
        rejected_before = self._rejections(kind, cluster)
        self._write(path, content)
        if self.admin_url is None:
            return True
        deadline = time.monotonic() + self.timeout
        while not applied():
            problem = None
            if self._rejections(kind, cluster) > rejected_before:
                problem = "Envoy rejected it (see Envoy's log)"
            elif time.monotonic() > deadline:
                problem = f"Envoy did not load it within {self.timeout:g}s"
            if problem is not None:
                error = RouterError(f"{path} version {version}: {problem}")
                self._restore(path, previous, error)
                raise error
            time.sleep(_POLL_INTERVAL)
        return True

    def _restore(self, path: Path, previous: str | None, cause: RouterError) -> None:
        try:
            if previous is None:
                path.unlink(missing_ok=True)
            else:
                self._write(path, previous)
        except (RouterError, OSError) as exc:
            cause.add_note(f"and the previous {path} could not be restored: {exc}")
            return
        self._log.warning("router.change_undone", file=str(path), cause=str(cause))

    def _write(self, path: Path, content: str) -> None:
        try:
            replace_file(path, content)
        except OSError as exc:
            raise RouterError(f"cannot write Envoy config {path}: {exc}") from exc

    # --- admin API ------------------------------------------------------------------------

    def _admin(self, path: str, params: dict[str, str] | None = None) -> str:
        assert self.admin_url is not None
        if self._http is None:
            # One client for the router's life: building one costs tens of milliseconds
            # (TLS context), more than the admin call itself, and a change makes several.
            self._http = httpx.Client(base_url=self.admin_url, timeout=self.timeout)
        try:
            response = self._http.get(path, params=params)
        except httpx.HTTPError as exc:
            raise RouterError(f"Envoy admin {self.admin_url} unreachable: {exc}") from exc
        if response.status_code != 200:
            raise RouterError(
                f"Envoy admin {path} answered {response.status_code}: {response.text[:200]}"
            )
        return response.text

    def _admin_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        text = self._admin(path, params)
        try:
            return json.loads(text)
        except ValueError as exc:
            raise RouterError(f"Envoy admin {path} answered something that is not JSON") from exc

    def _live_route(self) -> tuple[str, dict[str, Any]] | None:
        """(version_info, route configuration) Envoy runs for ``route_config``, if any."""
        dump = self._admin_json("/config_dump", {"resource": "dynamic_route_configs"})
        for config in dump.get("configs", []):
            route = config.get("route_config", {})
            if route.get("name") == self.route_config:
                return str(config.get("version_info", "")), route
        return None

    def _live_weights(self) -> dict[str, int] | None:
        live = self._live_route()
        return None if live is None else cluster_weights(live[1], self.virtual_host)

    def _endpoints_applied(self, cluster: str, address: Address) -> bool:
        clusters = self._admin_json("/clusters", {"format": "json"})
        for status in clusters.get("cluster_statuses", []):
            if status.get("name") != cluster:
                continue
            hosts = [
                host.get("address", {}).get("socket_address", {})
                for host in status.get("host_statuses", [])
            ]
            return [(h.get("address"), h.get("port_value")) for h in hosts] == [
                (address.host, address.port)
            ]
        return False

    def _rejections(self, kind: str, cluster: str | None) -> int:
        """Updates Envoy refused so far for this file (a counter that only grows)."""
        if self.admin_url is None:
            return 0
        if kind == "rds":
            pattern = rf"\.rds\.{re.escape(self.route_config)}\.update_rejected$"
        else:
            pattern = rf"^cluster\.{re.escape(cluster or '')}\.update_rejected$"
        stats = self._admin_json("/stats", {"filter": pattern, "format": "json"})
        return sum(int(s.get("value", 0)) for s in stats.get("stats", []) if "value" in s)

    def _weights(self, clusters: dict[str, int]) -> Weights:
        champion = clusters.get(self.clusters["champion"], 0)
        canary = clusters.get(self.clusters["canary"], 0)
        try:
            return Weights.from_units(champion, canary)
        except ValueError as exc:
            raise RouterError(f"Envoy route {self.route_config!r}: {exc}") from exc
