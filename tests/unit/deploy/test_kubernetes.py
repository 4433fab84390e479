"""The Kubernetes manifests hang together: every name and key they reference exists.

No cluster is needed: the kustomization is read the way kustomize reads it (resources, and
the ConfigMaps and the Secret its generators make, keyed by file name or by the keys of the
env file), then every reference of the Deployment and the Service is resolved against it.
The copies of the policy and of the Envoy files must equal their originals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from canary.core.policy import EnvoyRouter, parse_policy
from canary.service.policies import PolicySet
from canary.settings import load_settings
from tests.unit.deploy.dockerfile import stages

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy/kubernetes"


def load(name: str) -> Any:
    return yaml.safe_load((K8S / name).read_text())


@pytest.fixture(scope="module")
def kustomization() -> dict[str, Any]:
    doc: dict[str, Any] = load("kustomization.yaml")
    return doc


@pytest.fixture(scope="module")
def resources(kustomization) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for name in kustomization["resources"]:
        for doc in yaml.safe_load_all((K8S / name).read_text()):
            out[(doc["kind"], doc["metadata"]["name"])] = doc
    return out


@pytest.fixture(scope="module")
def config_maps(kustomization) -> dict[str, dict[str, str]]:
    """Generated ConfigMap name → key → content."""
    out = {}
    for generator in kustomization["configMapGenerator"]:
        out[generator["name"]] = {
            Path(f).name: (K8S / f).read_text() for f in generator.get("files", [])
        }
    return out


@pytest.fixture(scope="module")
def secrets(kustomization) -> dict[str, set[str]]:
    """Generated Secret name → its keys, from the committed example of the env file."""
    out = {}
    for generator in kustomization["secretGenerator"]:
        keys = set()
        for env_file in generator["envs"]:
            example = (K8S / env_file).with_name(Path(env_file).name + ".example")
            for line in example.read_text().splitlines():
                if line.strip() and not line.startswith("#"):
                    keys.add(line.split("=", 1)[0])
        out[generator["name"]] = keys
    return out


@pytest.fixture(scope="module")
def pod(resources) -> dict[str, Any]:
    deployment = resources[("Deployment", "canary")]
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in pod["containers"] + pod.get("initContainers", []) if c["name"] == name]
    return dict(found)


def mount_of(pod: dict[str, Any], name: str, volume: str) -> str:
    (mount,) = [m for m in container(pod, name)["volumeMounts"] if m["name"] == volume]
    return str(mount["mountPath"])


def test_every_file_the_kustomization_names_exists(kustomization):
    names = list(kustomization["resources"])
    names += [f for g in kustomization["configMapGenerator"] for f in g["files"]]
    names += [f + ".example" for g in kustomization["secretGenerator"] for f in g["envs"]]
    for name in names:
        assert (K8S / name).is_file(), name
    assert "secrets.env" in (K8S / ".gitignore").read_text().split()


def test_one_replica_recreated_never_two_controllers(resources):
    spec = resources[("Deployment", "canary")]["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    claim = resources[("PersistentVolumeClaim", "canary-state")]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_non_root_with_read_only_root_filesystems(pod):
    _, runtime = stages((ROOT / "Dockerfile").read_text())
    (user,) = runtime.all("USER")
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert f"{security['runAsUser']}:{security['runAsGroup']}" == user.arguments
    for c in pod["containers"] + pod["initContainers"]:
        context = c["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, c["name"]
        assert context["allowPrivilegeEscalation"] is False, c["name"]
        assert context["capabilities"]["drop"] == ["ALL"], c["name"]
    assert pod["automountServiceAccountToken"] is False


def test_every_reference_resolves(pod, resources, config_maps, secrets):
    assert ("ServiceAccount", pod["serviceAccountName"]) in resources
    volumes = {v["name"]: v for v in pod["volumes"]}
    for v in volumes.values():
        if "configMap" in v:
            assert v["configMap"]["name"] in config_maps, v
        if "persistentVolumeClaim" in v:
            assert ("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]) in resources
    for c in pod["containers"] + pod["initContainers"]:
        for mount in c.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if "subPath" in mount:
                assert mount["subPath"] in config_maps[volume["configMap"]["name"]]
        for env in c.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in secrets[ref["name"]], ref
    used = {
        ref["key"]
        for c in pod["containers"]
        for env in c.get("env", [])
        if (ref := env.get("valueFrom", {}).get("secretKeyRef"))
    }
    assert used == {"CANARY_API_TOKEN", "CANARY_SLACK_WEBHOOK_URL"}


def test_the_controller_container_matches_its_settings(pod, config_maps):
    canary = container(pod, "canary")
    env = {e["name"]: e.get("value") for e in canary["env"]}
    settings_file = Path(env["CANARY_SETTINGS_FILE"])
    assert mount_of(pod, "canary", "settings") == str(settings_file.parent)
    assert settings_file.name in config_maps["canary-settings"]
    settings = load_settings(K8S / settings_file.name)
    assert str(settings.state_dir) == mount_of(pod, "canary", "state")
    assert str(settings.policies) == mount_of(pod, "canary", "policies")
    assert mount_of(pod, "canary", "tmp") == "/tmp"  # Python and MLflow write temporary files
    ports = {p["name"]: p["containerPort"] for p in canary["ports"]}
    assert ports["api"] == settings.api_port
    assert canary["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "api"}
    assert canary["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "api"}
    assert pod["terminationGracePeriodSeconds"] > settings.shutdown_grace


def test_the_service_reaches_the_pod(resources, pod):
    service = resources[("Service", "canary")]
    labels = resources[("Deployment", "canary")]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    named = {p["name"] for c in pod["containers"] for p in c.get("ports", [])}
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in named, port


def test_the_policy_and_envoy_files_are_the_repository_s(config_maps):
    for name, text in config_maps["canary-policies"].items():
        assert text == (ROOT / "config/policies" / name).read_text(), name
    for name, text in config_maps["canary-envoy-seed"].items():
        assert text == (ROOT / "deploy/proxies/envoy/canary" / name).read_text(), name
    pod_bootstrap = yaml.safe_load(config_maps["canary-envoy"]["envoy.yaml"])
    host_bootstrap = yaml.safe_load((ROOT / "deploy/proxies/envoy/envoy.yaml").read_text())
    listener = pod_bootstrap["static_resources"]["listeners"][0]
    # The one difference: model traffic comes from other pods.
    assert listener["address"]["socket_address"]["address"] == "0.0.0.0"
    listener["address"]["socket_address"]["address"] = "127.0.0.1"
    assert pod_bootstrap == host_bootstrap


def test_the_envoy_sidecar_is_where_the_policy_looks(pod, config_maps):
    (text,) = config_maps["canary-policies"].values()
    router = parse_policy(text).router
    assert isinstance(router, EnvoyRouter)
    # Same folder in both containers, from one shared volume.
    assert mount_of(pod, "canary", "envoy-files") == router.config_dir
    assert mount_of(pod, "envoy", "envoy-files") == router.config_dir
    assert mount_of(pod, "seed-envoy-files", "envoy-files") == router.config_dir
    assert router.admin is not None
    assert router.admin.startswith("127.0.0.1:")  # the pod's loopback
    envoy = container(pod, "envoy")
    assert envoy["args"][:2] == ["-c", mount_of(pod, "envoy", "envoy-config")]
    seed = config_maps["canary-envoy-seed"][f"{router.champion_cluster}.eds.json"]
    endpoint = yaml.safe_load(seed)["resources"][0]["endpoints"][0]["lb_endpoints"][0]
    port = endpoint["endpoint"]["address"]["socket_address"]["port_value"]
    command = container(pod, "champion")["command"]
    assert command[command.index("-p") + 1] == str(port)


def test_policies_mounted_from_a_config_map_load_once(tmp_path, config_maps):
    """A ConfigMap volume holds each file twice (a hidden timestamped copy): load it once."""
    data = tmp_path / "..2026_01_01_00_00_00.000000001"
    data.mkdir()
    for name, text in config_maps["canary-policies"].items():
        (data / name).write_text(text)
    (tmp_path / "..data").symlink_to(data.name)
    for name in config_maps["canary-policies"]:
        (tmp_path / name).symlink_to(Path("..data") / name)
    policies = PolicySet(tmp_path)
    policies.load()
    assert [loaded.policy.model for loaded in policies.all()] == ["churn"]
    assert (tmp_path / "churn-envoy.yaml").is_symlink()
