"""Filling serving templates: per argument, validated values only, nothing a shell would read."""

from __future__ import annotations

import os
import socket

import pytest

from canary.core.policy import PortRange, Serving
from canary.errors import ServingError
from canary.serving.base import Backend, probe, render, template_values
from canary.serving.process import ProcessServing, _alive, _start_time
from canary.serving.static import StaticServing
from canary.traffic.base import Address


def test_each_argument_is_filled_on_its_own_and_stays_one_argument() -> None:
    values = template_values("credit-risk", "12", 18003)
    argv = ["serve", "-m", "models:/{model}/{version}", "-p", "{port}", "--x={{literal}}"]
    assert [render(a, values) for a in argv] == [
        "serve",
        "-m",
        "models:/credit-risk/12",
        "-p",
        "18003",
        "--x={literal}",
    ]


@pytest.mark.parametrize(
    ("model", "version"),
    [
        ("credit risk", "1"),  # would be two words in a shell
        ("-rf", "1"),  # would be an option
        ("m;touch x", "1"),
        ("m", "1 --evil"),
        ("m", "0"),
        ("../m", "1"),
    ],
)
def test_names_that_could_change_a_command_are_refused(model: str, version: str) -> None:
    with pytest.raises(ServingError, match="invalid"):
        template_values(model, version)


@pytest.mark.parametrize("template", ["{port:05d}", "{model!r}", "{unknown}", "{model.upper}"])
def test_only_plain_known_fields_are_filled(template: str) -> None:
    with pytest.raises(ServingError, match="cannot fill"):
        render(template, template_values("m", "1", 18000))


def test_a_broken_template_is_an_error_not_a_guess() -> None:
    with pytest.raises(ServingError, match="invalid template"):
        render("{model", {"model": "m"})


def test_static_address_from_model_and_version() -> None:
    serving = StaticServing(
        Serving(address="{model}-v{version}.models.internal:8080", health="http://{address}/ok")
    )
    backend = serving.start("credit-risk", "7")
    assert backend.address == Address("credit-risk-v7.models.internal", 8080)
    assert backend.health_url == "http://credit-risk-v7.models.internal:8080/ok"
    assert backend.pid is None
    serving.stop("credit-risk", "7")  # nothing to stop, and no error


def test_static_address_that_is_not_a_valid_host_is_refused() -> None:
    serving = StaticServing(Serving(address="{model}.internal:8080"))
    with pytest.raises(ServingError, match="invalid host"):
        serving.start("credit_risk", "7")  # '_' is not allowed in a DNS label


def test_static_serving_refuses_a_port_it_would_have_to_invent() -> None:
    # The policy schema refuses it first; the serving layer refuses it too, for configs
    # built without the schema.
    with pytest.raises(ValueError, match=r"\{port\}"):
        StaticServing(Serving(address="127.0.0.1:{port}"))
    serving = Serving.model_construct(address="127.0.0.1:{port}", start=None, health=None)
    with pytest.raises(ServingError, match=r"\{port\}"):
        StaticServing(serving)


def test_tcp_probe_without_health_url() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        assert probe(Backend("m", "1", Address("127.0.0.1", port)))
    assert not probe(Backend("m", "1", Address("127.0.0.1", port)), timeout=0.5)


def test_health_probe_failure_is_false_not_an_exception() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = Backend("m", "1", Address("127.0.0.1", port), f"http://127.0.0.1:{port}/health")
    assert probe(backend, timeout=0.5) is False


def test_ports_in_use_are_skipped_and_an_exhausted_range_is_an_error(tmp_path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        first = busy.getsockname()[1]
        if first >= 65535:
            pytest.skip("the kernel handed out the last port")
        serving = ProcessServing(
            Serving(
                address="127.0.0.1:{port}", start=["x"], ports=PortRange(first=first, last=first)
            ),
            tmp_path,
        )
        with pytest.raises(ServingError, match=f"no free port in {first}-{first}"):
            serving._free_port()
        wider = ProcessServing(
            Serving(
                address="127.0.0.1:{port}",
                start=["x"],
                ports=PortRange(first=first, last=min(first + 20, 65535)),
            ),
            tmp_path,
        )
        port = wider._free_port()
        assert first < port <= first + 20


def test_a_process_is_recognised_by_pid_and_start_time() -> None:
    started = _start_time(os.getpid())
    assert started is not None
    assert _alive(os.getpid(), started)
    assert not _alive(os.getpid(), str(int(started) + 1))  # same pid, another process
    assert not _alive(os.getpid(), "")
