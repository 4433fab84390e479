"""NginxRouter against a real nginx (include file, ``nginx -t``, reload), with real backends."""

from __future__ import annotations

import time

import pytest

from canary.errors import RouterError
from canary.traffic.base import Address, Weights
from canary.traffic.nginx import NginxRouter, parse_upstream
from tests.harness.backends import BackendPair
from tests.harness.nginx import NginxInstance
from tests.integration.traffic.load import Load
from tests.integration.traffic.split import SETTLE, TOLERANCE, check_split_follows_weights

pytestmark = pytest.mark.integration


def _router(instance: NginxInstance, nginx: str | None = None) -> NginxRouter:
    return NginxRouter(
        instance.upstream,
        instance.include_file,
        nginx=nginx or instance.binary,
        conf=str(instance.conf),
        prefix=str(instance.prefix),
    )


def test_weights_move_live_traffic_without_failures(
    nginx: NginxInstance, name_backends: BackendPair
) -> None:
    router = _router(nginx)
    router.check()
    assert router.read() == Weights(canary=0)
    router.set_backend("canary", Address.parse(name_backends.green.address))
    # The canary is in the upstream but "down" (nginx refuses weight=0) until weights move.
    assert "down;  # canary:canary" in nginx.include_file.read_text()
    assert router.read() == Weights(canary=0)

    check_split_follows_weights(
        router, nginx.url, name_backends, deterministic=True, closes_connections=True
    )


def test_include_file_holds_reduced_weights_and_down(
    nginx: NginxInstance, name_backends: BackendPair
) -> None:
    router = _router(nginx)
    router.set_backend("canary", Address.parse(name_backends.green.address))
    router.apply(Weights(canary=12.5))
    upstream = parse_upstream(nginx.include_file.read_text(), "upstream.conf")
    assert (upstream.champion_units, upstream.canary_units) == (7, 1)
    router.apply(Weights(canary=100))
    text = nginx.include_file.read_text()
    assert f"server {name_backends.blue.address} down;  # canary:champion" in text
    assert f"server {name_backends.green.address} weight=1;  # canary:canary" in text
    assert router.read() == Weights(canary=100)


def test_unchanged_weights_do_not_reload_again(
    nginx: NginxInstance, name_backends: BackendPair
) -> None:
    router = _router(nginx)
    router.set_backend("canary", Address.parse(name_backends.green.address))
    router.apply(Weights(canary=10))
    stamp = nginx.include_file.stat().st_mtime_ns
    router.apply(Weights(canary=10))
    router.set_backend("canary", Address.parse(name_backends.green.address))
    assert nginx.include_file.stat().st_mtime_ns == stamp
    # A new router (a restarted daemon) reloads once even though the file already matches:
    # it cannot know whether nginx was reloaded after the file was written.
    fresh = _router(nginx)
    fresh.apply(Weights(canary=10))
    assert nginx.include_file.stat().st_mtime_ns != stamp


def test_failed_config_test_restores_file_and_keeps_serving_old_weights(
    nginx: NginxInstance, name_backends: BackendPair
) -> None:
    router = _router(nginx)
    router.set_backend("canary", Address.parse(name_backends.green.address))
    router.apply(Weights(canary=10))
    good = nginx.include_file.read_text()
    (nginx.conf_d / "broken.conf").write_text("this_is_not_a_directive on;\n")

    with pytest.raises(RouterError, match='unknown directive "this_is_not_a_directive"'):
        router.apply(Weights(canary=50))
    assert nginx.include_file.read_text() == good
    assert router.read() == Weights(canary=10)
    leftovers = [p.name for p in nginx.include_file.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []

    # nginx still routes 90/10: the broken change never reached it.
    with Load(nginx.url) as load:
        split = load.split_after(time.monotonic(), 1000, skip=SETTLE)
        assert load.errors == []
    assert abs(100 * split[name_backends.green.name] / 1000 - 10) <= TOLERANCE

    # Once the configuration is fixed, the same call succeeds.
    (nginx.conf_d / "broken.conf").unlink()
    assert router.apply(Weights(canary=50)) == Weights(canary=50)
    assert router.read() == Weights(canary=50)


def test_nginx_not_running_raises_and_restores(
    nginx: NginxInstance, name_backends: BackendPair
) -> None:
    router = _router(nginx)
    router.set_backend("canary", Address.parse(name_backends.green.address))
    router.apply(Weights(canary=10))
    good = nginx.include_file.read_text()
    nginx.process.stop()

    with pytest.raises(RouterError, match="nginx is not running"):
        router.check()
    with pytest.raises(RouterError, match="nginx is not running"):
        router.apply(Weights(canary=50))
    assert nginx.include_file.read_text() == good


def test_missing_nginx_binary_raises_router_error(nginx: NginxInstance, tmp_path) -> None:
    router = _router(nginx, nginx=str(tmp_path / "no-nginx-here"))
    with pytest.raises(RouterError, match="could not run"):
        router.check()
    good = nginx.include_file.read_text()
    with pytest.raises(RouterError, match="could not run"):
        router.set_backend("canary", Address("127.0.0.1", 9))
    assert nginx.include_file.read_text() == good


def test_apply_without_a_canary_address_is_refused(nginx: NginxInstance) -> None:
    router = _router(nginx)
    good = nginx.include_file.read_text()
    with pytest.raises(RouterError, match="set_backend"):
        router.apply(Weights(canary=10))
    assert nginx.include_file.read_text() == good
