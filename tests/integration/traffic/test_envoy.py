"""EnvoyRouter against a real Envoy (file-based RDS and EDS, admin API), with real backends."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from canary.errors import RouterError
from canary.traffic.base import Address, Weights
from canary.traffic.envoy import EnvoyRouter
from tests.harness.backends import BackendPair
from tests.harness.envoy import EnvoyInstance
from tests.harness.proc import free_port
from tests.integration.traffic.split import check_split_follows_weights

pytestmark = pytest.mark.integration


def _router(instance: EnvoyInstance, *, admin: bool = True, timeout: float = 10.0) -> EnvoyRouter:
    return EnvoyRouter(
        instance.config_dir,
        instance.route_config,
        admin=instance.admin if admin else None,
        timeout=timeout,
    )


def test_weights_move_live_traffic_without_failures(
    envoy: EnvoyInstance, name_backends: BackendPair
) -> None:
    router = _router(envoy)
    router.check()
    assert router.read() == Weights(canary=0)
    router.set_backend("canary", Address.parse(name_backends.green.address))
    assert router.read() == Weights(canary=0)

    check_split_follows_weights(router, envoy.url, name_backends, deterministic=False)


def test_envoy_runs_what_the_files_say(envoy: EnvoyInstance, name_backends: BackendPair) -> None:
    router = _router(envoy)
    router.set_backend("canary", Address.parse(name_backends.green.address))
    assert router.apply(Weights(canary=12.5)) == Weights(canary=12.5)
    # apply returned only once Envoy's live route had the new weights.
    assert envoy.route_weights() == {"champion": 7, "canary": 1}
    # Reading from the file (no admin address) and from Envoy agree.
    assert _router(envoy, admin=False).read() == router.read() == Weights(canary=12.5)


def test_unchanged_state_writes_nothing(envoy: EnvoyInstance, name_backends: BackendPair) -> None:
    # The harness's initial route already has these weights under another version: Envoy
    # keeps its version for equal content, so the router must confirm by content.
    assert _router(envoy).apply(Weights(canary=0)) == Weights(canary=0)
    router = _router(envoy)
    green = Address.parse(name_backends.green.address)
    router.set_backend("canary", green)
    router.apply(Weights(canary=30))
    files = sorted(envoy.config_dir.iterdir())
    stamps = [p.stat().st_mtime_ns for p in files]
    router.set_backend("canary", green)
    router.apply(Weights(canary=30))
    assert [p.stat().st_mtime_ns for p in sorted(envoy.config_dir.iterdir())] == stamps


def test_apply_without_a_canary_endpoint_is_refused(envoy: EnvoyInstance) -> None:
    router = _router(envoy)
    with pytest.raises(RouterError, match="has no endpoint"):
        router.apply(Weights(canary=10))
    assert envoy.route_weights() == {"champion": 1, "canary": 0}


@contextmanager
def _read_only(directory: Path) -> Iterator[None]:
    """Make ``directory`` refuse new files, even for root (the immutable attribute)."""
    directory.chmod(0o555)
    immutable = False
    try:
        probe = directory / ".probe"
        try:
            probe.touch()
        except PermissionError:
            pass
        else:
            probe.unlink()
            done = subprocess.run(
                ["chattr", "+i", str(directory)], capture_output=True, check=False
            )
            immutable = done.returncode == 0
            if not immutable:
                pytest.skip("cannot make a directory read-only here (root without chattr)")
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(directory)], check=True)
        directory.chmod(0o755)


def test_unwritable_config_dir_raises_and_keeps_envoy_as_it_was(
    envoy: EnvoyInstance, name_backends: BackendPair
) -> None:
    router = _router(envoy)
    router.set_backend("canary", Address.parse(name_backends.green.address))
    router.apply(Weights(canary=10))
    before = {p.name: p.read_text() for p in envoy.config_dir.iterdir()}

    with _read_only(envoy.config_dir):
        assert not os.access(envoy.config_dir, os.W_OK) or os.geteuid() == 0
        with pytest.raises(RouterError, match="cannot write Envoy config"):
            router.apply(Weights(canary=50))
        with pytest.raises(RouterError, match="cannot write Envoy config"):
            router.set_backend("canary", Address.parse(name_backends.blue.address))
        assert {p.name: p.read_text() for p in envoy.config_dir.iterdir()} == before
        assert envoy.route_weights() == {"champion": 9, "canary": 1}
        assert router.read() == Weights(canary=10)

    # Writable again: the same call goes through.
    assert router.apply(Weights(canary=50)) == Weights(canary=50)
    assert envoy.route_weights() == {"champion": 1, "canary": 1}


def test_unreachable_admin_raises_before_anything_is_written(
    envoy: EnvoyInstance, name_backends: BackendPair, tmp_path: Path
) -> None:
    router = EnvoyRouter(
        envoy.config_dir, envoy.route_config, admin=f"127.0.0.1:{free_port()}", timeout=1.0
    )
    before = {p.name: p.read_text() for p in envoy.config_dir.iterdir()}
    for call in (
        router.check,
        router.read,
        lambda: router.set_backend("canary", Address.parse(name_backends.green.address)),
    ):
        with pytest.raises(RouterError, match="unreachable"):
            call()
    assert {p.name: p.read_text() for p in envoy.config_dir.iterdir()} == before


def test_config_envoy_rejects_is_rolled_back(
    envoy: EnvoyInstance, name_backends: BackendPair
) -> None:
    router = _router(envoy, timeout=5.0)
    router.set_backend("canary", Address.parse(name_backends.green.address))
    router.apply(Weights(canary=10))
    good = router.route_file.read_text()
    # A route file Envoy refuses (weights summing to 0) arrives through the router's own
    # install path, as a rejected update would: the router must notice and move the
    # previous file back rather than wait for its timeout.
    document = json.loads(good)
    clusters = document["resources"][0]["virtual_hosts"][0]["routes"][0]["route"]
    for cluster in clusters["weighted_clusters"]["clusters"]:
        cluster["weight"] = 0
    document["version_info"] = "rejected-on-purpose"
    with pytest.raises(RouterError, match="rejected"):
        router._install(
            router.route_file,
            document,
            lambda: router._live_weights() == {"champion": 0, "canary": 0},
            "rds",
        )
    assert router.route_file.read_text() == good
    assert envoy.route_weights() == {"champion": 9, "canary": 1}
    assert router.read() == Weights(canary=10)
