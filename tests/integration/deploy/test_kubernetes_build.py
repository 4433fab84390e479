"""``kubectl kustomize`` builds the manifests, and the built Deployment points at the
generated (hash-suffixed) ConfigMaps and Secret. Runs where kubectl is installed (it needs no
cluster); skipped elsewhere: CI does not install it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def test_kustomize_build_resolves_the_generated_names(tmp_path):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    folder = tmp_path / "kubernetes"
    shutil.copytree(ROOT / "deploy/kubernetes", folder)
    example = (folder / "secrets.env.example").read_text()
    (folder / "secrets.env").write_text(example.replace("=\n", "=made-up-for-the-test\n"))
    done = subprocess.run(
        [kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    by_kind: dict[str, list[dict]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "canary", doc["metadata"]
    generated = {d["metadata"]["name"] for d in by_kind["ConfigMap"] + by_kind["Secret"]}
    assert all(name.rsplit("-", 1)[1] for name in generated)  # hash suffixes
    (deployment,) = by_kind["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    for volume in pod["volumes"]:
        if "configMap" in volume:
            assert volume["configMap"]["name"] in generated, volume
    for c in pod["containers"]:
        for env in c.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["name"] in generated, ref
    assert {c["image"] for c in pod["containers"] if c["name"] != "envoy"} == {"canary:0.1.0"}
