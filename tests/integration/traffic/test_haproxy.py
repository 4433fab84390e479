"""HAProxyRouter against a real HAProxy, over its runtime API, with real backends."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

import pytest

from canary.errors import RouterError
from canary.traffic.base import Address, Weights
from canary.traffic.haproxy import HAProxyRouter
from tests.harness.backends import BackendPair
from tests.harness.haproxy import HAProxyInstance, runtime_command
from tests.harness.proc import free_port
from tests.integration.traffic.split import check_split_follows_weights

pytestmark = pytest.mark.integration


def _router(instance: HAProxyInstance, **options: object) -> HAProxyRouter:
    return HAProxyRouter(instance.runtime_tcp, instance.backend, **options)  # type: ignore[arg-type]


def _state(instance: HAProxyInstance) -> dict[str, tuple[str, str, str]]:
    """server → (addr, port, user weight) as HAProxy reports it, bypassing the router."""
    lines = runtime_command(instance, f"show servers state {instance.backend}").splitlines()
    header = lines[1].removeprefix("# ").split()
    rows = [dict(zip(header, line.split(), strict=False)) for line in lines[2:] if line.strip()]
    return {r["srv_name"]: (r["srv_addr"], r["srv_port"], r["srv_uweight"]) for r in rows}


@pytest.mark.parametrize("api", ["tcp", "unix"])
def test_weights_move_live_traffic_without_failures(
    haproxy: HAProxyInstance, name_backends: BackendPair, api: str
) -> None:
    spec = haproxy.runtime_tcp if api == "tcp" else haproxy.runtime_unix
    router = HAProxyRouter(spec, haproxy.backend)
    router.check()
    router.set_backend("canary", Address.parse(name_backends.green.address))
    # The new canary server exists, points at green, and takes nothing until weights say so.
    assert _state(haproxy)["canary"] == ("127.0.0.1", str(name_backends.green.port), "0")
    assert router.read() == Weights(canary=0)

    check_split_follows_weights(router, haproxy.url, name_backends, deterministic=True)


def test_weights_map_to_haproxy_units_and_back(
    haproxy: HAProxyInstance, name_backends: BackendPair
) -> None:
    router = _router(haproxy)
    router.set_backend("canary", Address.parse(name_backends.green.address))
    assert router.apply(Weights(canary=25)) == Weights(canary=25)
    assert _state(haproxy)["champion"][2] == "3"
    assert _state(haproxy)["canary"][2] == "1"
    # 0.1 % is finer than HAProxy's 0-256 range: the router returns the nearest share it
    # has (1 in 257) and read() agrees with it.
    applied = router.apply(Weights(canary=0.1))
    assert applied == Weights.from_units(256, 1)
    assert router.read() == applied


def test_apply_and_set_backend_are_idempotent(
    haproxy: HAProxyInstance, name_backends: BackendPair
) -> None:
    router = _router(haproxy)
    green = Address.parse(name_backends.green.address)
    router.set_backend("canary", green)
    router.set_backend("canary", green)
    router.apply(Weights(canary=30))
    before = _state(haproxy)
    assert router.apply(Weights(canary=30)) == Weights(canary=30)
    router.set_backend("canary", green)
    assert _state(haproxy) == before


def test_set_backend_moves_an_idle_arm_and_revives_a_disabled_one(
    haproxy: HAProxyInstance, name_backends: BackendPair
) -> None:
    router = _router(haproxy)
    router.set_backend("canary", Address.parse(name_backends.green.address))
    router.apply(Weights(canary=20))
    # Someone puts the canary in maintenance by hand: it stops taking traffic.
    assert runtime_command(haproxy, "disable server app/canary").strip() == ""
    assert router.read() == Weights(canary=0)
    # Pointing it at a new address brings it back with weight 0, never with its old share.
    router.set_backend("canary", Address.parse(name_backends.blue.address))
    assert _state(haproxy)["canary"] == ("127.0.0.1", str(name_backends.blue.port), "0")
    assert router.read() == Weights(canary=0)
    assert router.apply(Weights(canary=20)) == Weights(canary=20)


def test_unknown_backend_is_refused_by_haproxy(haproxy: HAProxyInstance) -> None:
    router = HAProxyRouter(haproxy.runtime_tcp, "no_such_backend")
    with pytest.raises(RouterError, match="Can't find backend"):
        router.apply(Weights(canary=10))
    with pytest.raises(RouterError, match="Can't find backend"):
        router.check()


def test_unknown_canary_server_leaves_weights_intact(
    haproxy: HAProxyInstance, name_backends: BackendPair
) -> None:
    router = _router(haproxy)
    router.set_backend("canary", Address.parse(name_backends.green.address))
    router.apply(Weights(canary=10))
    before = _state(haproxy)
    ghost = _router(haproxy, canary_server="ghost")
    with pytest.raises(RouterError, match="no canary server 'ghost'"):
        ghost.apply(Weights(canary=50))
    assert _state(haproxy) == before
    assert router.read() == Weights(canary=10)


def test_refused_weight_change_leaves_weights_intact(
    haproxy_factory: Callable[..., HAProxyInstance], name_backends: BackendPair
) -> None:
    # static-rr backends only take weights 0% and 100% at runtime: a real refusal.
    instance = haproxy_factory(
        {"champion": name_backends.blue.address, "canary": name_backends.green.address},
        balance="static-rr",
    )
    router = _router(instance)
    assert router.read() == Weights(canary=50)
    with pytest.raises(RouterError, match="static LB algorithm"):
        router.apply(Weights(canary=10))
    assert _state(instance)["champion"][2] == "1"
    assert _state(instance)["canary"][2] == "1"
    assert router.read() == Weights(canary=50)


def test_host_name_is_refused_and_nothing_changes(
    haproxy: HAProxyInstance, name_backends: BackendPair
) -> None:
    router = _router(haproxy)
    router.set_backend("canary", Address.parse(name_backends.green.address))
    router.apply(Weights(canary=10))
    runtime_command(haproxy, "disable server app/canary")
    before = _state(haproxy)
    # "set server addr" takes IP addresses only; the router says so before sending anything.
    with pytest.raises(RouterError, match="IP address"):
        router.set_backend("canary", Address("localhost", name_backends.blue.port))
    assert _state(haproxy) == before


@pytest.mark.parametrize("spec", ["tcp", "unix"])
def test_unreachable_runtime_api_raises_router_error(spec: str, tmp_path) -> None:
    api = f"tcp:127.0.0.1:{free_port()}" if spec == "tcp" else f"unix:{tmp_path}/none.sock"
    router = HAProxyRouter(api, "app", timeout=1.0)
    for call in (router.check, router.read, lambda: router.apply(Weights(canary=10))):
        with pytest.raises(RouterError, match="unreachable"):
            call()


def test_frozen_haproxy_times_out_then_retry_succeeds(
    haproxy: HAProxyInstance, name_backends: BackendPair
) -> None:
    router = _router(haproxy, timeout=0.5)
    router.set_backend("canary", Address.parse(name_backends.green.address))
    router.apply(Weights(canary=10))
    assert haproxy.process.popen is not None
    os.kill(haproxy.process.popen.pid, signal.SIGSTOP)
    try:
        with pytest.raises(RouterError, match="unreachable"):
            router.apply(Weights(canary=50))
    finally:
        os.kill(haproxy.process.popen.pid, signal.SIGCONT)
    # A timed-out call has an ambiguous outcome: a command already in the socket's buffer is
    # carried out once HAProxy runs again. The state is the old or the new split, never
    # anything else, and the retry (what the daemon does every tick) converges.
    assert router.read() in (Weights(canary=10), Weights(canary=50))
    assert router.apply(Weights(canary=50)) == Weights(canary=50)
    assert router.read() == Weights(canary=50)
