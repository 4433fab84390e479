"""The systemd unit: hardened as promised, and consistent with the settings and the docs.

``systemd-analyze verify`` runs in tests/integration/deploy/test_systemd_verify.py where
systemd is installed; this file reads the unit the way systemd does (sections, repeated
keys) and checks what the daemon relies on.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from canary.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
SYSTEMD = ROOT / "deploy/systemd"


def unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Section → (key, value) in file order; comments and blank lines dropped."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            sections.setdefault(current, [])
            continue
        key, _, value = line.partition("=")
        sections[current].append((key.strip(), value.strip()))
    return sections


def values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [v for k, v in section if k == key]


def one(section: list[tuple[str, str]], key: str) -> str:
    (value,) = values(section, key)
    return value


def environment(service: list[tuple[str, str]]) -> dict[str, str]:
    out = {}
    for value in values(service, "Environment"):
        for pair in shlex.split(value):
            name, _, setting = pair.partition("=")
            out[name] = setting
    return out


SERVICE = unit(SYSTEMD / "canary.service")["Service"]


def test_hardening():
    expected = {
        "User": "canary",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "StateDirectory": "canary",
        "ConfigurationDirectory": "canary",
        "Restart": "on-failure",
        "CapabilityBoundingSet": "",
        "ExecReload": "/bin/kill -HUP $MAINPID",
    }
    for key, value in expected.items():
        assert one(SERVICE, key) == value, key
    # Nothing outside the state directory is writable in the main unit.
    assert values(SERVICE, "ReadWritePaths") == []


def test_paths_agree_with_the_settings_and_the_venv():
    env = environment(SERVICE)
    executable, *args = shlex.split(one(SERVICE, "ExecStart"))
    assert args == ["run"]
    venv_bin = str(Path(executable).parent)
    assert env["PATH"].split(":")[0] == venv_bin  # mlflow, python: the venv's first
    assert env["CANARY_STATE_DIR"] == "/var/lib/" + one(SERVICE, "StateDirectory")
    config_dir = "/etc/" + one(SERVICE, "ConfigurationDirectory")
    assert env["CANARY_POLICIES"].startswith(config_dir + "/")
    assert one(SERVICE, "EnvironmentFile").lstrip("-").startswith(config_dir + "/")
    fields = {f"CANARY_{name.upper()}" for name in Settings.model_fields}
    assert {k for k in env if k.startswith("CANARY_")} <= fields | {"CANARY_SETTINGS_FILE"}


def test_stop_waits_longer_than_the_shutdown_grace():
    timeout = one(SERVICE, "TimeoutStopSec")
    assert timeout.endswith("s")
    assert float(timeout[:-1]) > Settings().shutdown_grace
    # Model servers the controller started outlive a restart of the controller.
    assert one(SERVICE, "KillMode") == "process"


def test_env_example_names_real_settings_and_no_values():
    lines = (SYSTEMD / "canary.env.example").read_text().splitlines()
    assignments = [line.lstrip("#") for line in lines if "=" in line and " " not in line]
    names = {line.split("=", 1)[0] for line in assignments}
    fields = {f"CANARY_{name.upper()}" for name in Settings.model_fields}
    policy_level = {"CANARY_WEBHOOK_URL"}  # named by a policy's notify.webhook.url_env
    mlflow_client = {n for n in names if n.startswith("MLFLOW_")}
    assert names - mlflow_client - policy_level <= fields
    assert {"CANARY_API_TOKEN", "CANARY_SLACK_WEBHOOK_URL"} <= names
    for line in lines:
        if line.startswith(("CANARY_API_TOKEN=", "CANARY_SLACK_WEBHOOK_URL=")):
            assert line.endswith("="), "the example must not carry a secret"


def test_sysusers_creates_the_unit_s_user():
    (line,) = [
        line
        for line in (SYSTEMD / "canary.sysusers.conf").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    kind, name, *_ = shlex.split(line)
    assert (kind, name) == ("u", one(SERVICE, "User"))
    assert "/var/lib/" + one(SERVICE, "StateDirectory") in line


def test_drop_ins_only_widen_what_their_proxy_needs():
    drop_ins = {p.stem: unit(p)["Service"] for p in (SYSTEMD / "canary.service.d").glob("*.conf")}
    assert set(drop_ins) == {"haproxy", "nginx", "envoy"}
    assert values(drop_ins["haproxy"], "SupplementaryGroups") == ["haproxy"]
    assert values(drop_ins["envoy"], "ReadWritePaths") == ["/etc/envoy/canary"]
    nginx_caps = set(one(drop_ins["nginx"], "AmbientCapabilities").split())
    assert nginx_caps == set(one(drop_ins["nginx"], "CapabilityBoundingSet").split())
    assert nginx_caps == {"CAP_KILL", "CAP_DAC_OVERRIDE", "CAP_NET_BIND_SERVICE"}
    assert "/etc/nginx/canary" in one(drop_ins["nginx"], "ReadWritePaths").split()
