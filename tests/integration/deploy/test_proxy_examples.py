"""The example proxy configurations in ``deploy/proxies`` are valid and fit the policies.

Each one is checked by its own proxy (``haproxy -c``, ``nginx -t`` under a prefix of its own,
``envoy --mode validate`` and a real Envoy start) and against the example policy in
``config/policies`` that drives it: the names and paths the router will use must be the ones
the configuration defines. Absolute paths (``/etc/...``) and listening ports are moved into a
temporary folder and onto free ports for the check, and nothing else is changed.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from canary.core.policy import EnvoyRouter, HAProxyRouter, NginxRouter, Policy, parse_policy
from canary.traffic.envoy import EnvoyRouter as EnvoyRouterImpl
from canary.traffic.envoy import cluster_weights, route_document
from canary.traffic.nginx import parse_upstream
from tests.harness.proc import ManagedProcess, free_port, http_ok, require_binary

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
PROXIES = ROOT / "deploy/proxies"


def policy(name: str) -> Policy:
    return parse_policy((ROOT / "config/policies" / name).read_text())


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


# --- HAProxy ---------------------------------------------------------------------------------


def haproxy_sections(text: str) -> dict[str, list[str]]:
    """``"global"``, ``"backend credit_risk"``, ... → their directive lines."""
    sections: dict[str, list[str]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not line[0].isspace():
            current = line.strip()
            sections[current] = []
        elif current is not None:
            sections[current].append(line.strip())
    return sections


def test_haproxy_example_is_valid_and_matches_the_credit_risk_policy():
    router = policy("credit-risk.yaml").router
    assert isinstance(router, HAProxyRouter)
    config = PROXIES / "haproxy/haproxy.cfg"
    done = run([require_binary("haproxy"), "-c", "-f", str(config)])
    assert done.returncode == 0, done.stderr
    assert "Configuration file is valid" in done.stdout
    warnings = [line for line in done.stderr.splitlines() if "[WARNING]" in line]
    # The only warning allowed: the server-state file does not exist before the first save.
    assert all("server state file" in w for w in warnings), warnings

    sections = haproxy_sections(config.read_text())
    sockets = [line.split() for line in sections["global"] if line.startswith("stats socket")]
    assert router.runtime_api.startswith("unix:")
    (socket,) = [s for s in sockets if s[2] == router.runtime_api.removeprefix("unix:")]
    assert socket[socket.index("level") + 1] == "admin"
    servers = {
        line.split()[1]: line.split()
        for line in sections[f"backend {router.backend}"]
        if line.startswith("server ")
    }
    assert set(servers) == {router.champion_server, router.canary_server}
    # The canary waits parked: no weight, no traffic, until a rollout gives it an address.
    canary = servers[router.canary_server]
    assert canary[canary.index("weight") + 1] == "0"
    assert "disabled" in canary


# --- nginx -----------------------------------------------------------------------------------


def nginx_main(prefix: Path, site: Path) -> str:
    temp = "\n".join(
        f"    {kind}_temp_path {prefix}/tmp/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"pid {prefix}/nginx.pid;\nerror_log {prefix}/error.log;\n"
        "events { worker_connections 64; }\n"
        f"http {{\n    access_log off;\n{temp}\n    include {site};\n}}\n"
    )


def test_nginx_example_is_valid_and_matches_the_fraud_score_policy(tmp_path):
    router = policy("fraud-score-nginx.yaml").router
    assert isinstance(router, NginxRouter)
    site_text = (PROXIES / "nginx/fraud-score.conf").read_text()
    include_text = (PROXIES / "nginx/canary/fraud_score.conf").read_text()

    includes = re.findall(r"^\s*include\s+(\S+);", site_text, re.MULTILINE)
    assert includes == [router.include_file]
    assert re.findall(r"proxy_pass\s+http://([^;/]+);", site_text) == [router.upstream]
    # The include file is in the router's own format, for the policy's upstream.
    upstream = parse_upstream(include_text, "fraud_score.conf")
    assert upstream.name == router.upstream
    assert upstream.champion is not None
    assert upstream.canary is None
    assert router.include_file.endswith("/" + "fraud_score.conf")

    prefix = tmp_path / "nginx"
    (prefix / "tmp").mkdir(parents=True)
    include = prefix / "canary" / "fraud_score.conf"
    include.parent.mkdir()
    include.write_text(include_text)
    site = prefix / "fraud-score.conf"
    listen = re.search(r"listen\s+127\.0\.0\.1:(\d+);", site_text)
    assert listen is not None
    site.write_text(
        site_text.replace(router.include_file, str(include)).replace(
            listen.group(0), f"listen 127.0.0.1:{free_port()};"
        )
    )
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_main(prefix, site))
    nginx = require_binary("nginx")
    done = run([nginx, "-t", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")])
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr


# --- Envoy -----------------------------------------------------------------------------------


def envoy_config(
    tmp_path: Path, config_dir: str, ports: tuple[int, int]
) -> tuple[Path, dict, Path]:
    """The example bootstrap with its folder under ``tmp_path`` and its ports free."""
    text = (PROXIES / "envoy/envoy.yaml").read_text()
    original = yaml.safe_load(text)
    local_dir = tmp_path / "canary"
    local_dir.mkdir()
    for seed in (PROXIES / "envoy/canary").glob("*.json"):
        (local_dir / seed.name).write_text(seed.read_text())
    local = yaml.safe_load(text.replace(config_dir, str(local_dir)))
    local["admin"]["address"]["socket_address"]["port_value"] = ports[0]
    listener = local["static_resources"]["listeners"][0]
    listener["address"]["socket_address"]["port_value"] = ports[1]
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(local))
    return path, original, local_dir


def test_envoy_example_is_valid_and_matches_the_churn_policy(tmp_path):
    router = policy("churn-envoy.yaml").router
    assert isinstance(router, EnvoyRouter)
    path, bootstrap, _ = envoy_config(tmp_path, router.config_dir, (free_port(), free_port()))

    admin = bootstrap["admin"]["address"]["socket_address"]
    assert f"{admin['address']}:{admin['port_value']}" == router.admin
    manager = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    rds = manager["typed_config"]["rds"]
    assert rds["route_config_name"] == router.route_config
    rds_path = rds["config_source"]["path_config_source"]["path"]
    assert rds_path == f"{router.config_dir}/{router.route_config}.rds.json"
    clusters = {
        c["name"]: c["eds_cluster_config"]["eds_config"]["path_config_source"]["path"]
        for c in bootstrap["static_resources"]["clusters"]
    }
    assert clusters == {
        name: f"{router.config_dir}/{name}.eds.json"
        for name in (router.champion_cluster, router.canary_cluster)
    }

    # The seed route file is exactly what the router writes for "all traffic to champion".
    seed = json.loads((PROXIES / f"envoy/canary/{router.route_config}.rds.json").read_text())
    expected = route_document(
        router.route_config,
        router.virtual_host,
        {router.champion_cluster: 1, router.canary_cluster: 0},
    )
    assert seed == expected
    assert cluster_weights(seed["resources"][0], router.virtual_host) == {
        router.champion_cluster: 1,
        router.canary_cluster: 0,
    }

    envoy = require_binary("envoy")
    done = run([envoy, "--mode", "validate", "-c", str(path), "--log-level", "warn"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stdout


def test_envoy_example_runs_and_the_router_reads_it(tmp_path):
    """A real Envoy on the example bootstrap and seed files: the router sees 100% champion."""
    router_config = policy("churn-envoy.yaml").router
    assert isinstance(router_config, EnvoyRouter)
    admin_port, listen_port = free_port(), free_port()
    path, _, local_dir = envoy_config(tmp_path, router_config.config_dir, (admin_port, listen_port))
    process = ManagedProcess(
        "envoy",
        [require_binary("envoy"), "-c", str(path), "--disable-hot-restart", "--log-level", "warn"],
        tmp_path,
    ).start()
    try:
        process.wait_ready(lambda: http_ok(f"http://127.0.0.1:{admin_port}/ready"), timeout=30)
        router = EnvoyRouterImpl(
            local_dir,
            router_config.route_config,
            virtual_host=router_config.virtual_host,
            champion_cluster=router_config.champion_cluster,
            canary_cluster=router_config.canary_cluster,
            admin=f"127.0.0.1:{admin_port}",
        )
        router.check()
        weights = router.read()
        assert (weights.champion, weights.canary) == (100.0, 0.0)
    finally:
        process.stop()
