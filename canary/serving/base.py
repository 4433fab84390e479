"""How a model version becomes a backend the proxy can route to.

Two ways, both from the policy's ``serving`` section: a static address template for
versions someone else serves (a platform, a systemd unit per version), or a command that
canary starts for the version on a port it picks. Either way the result is a ``Backend``:
the version and an ``Address`` the router accepts as it is.

Templates are filled per argument with validated values only (model name, version number,
port), never through a shell, so a registry name can neither add an argument nor run a
command: a value that does not match its pattern is refused before anything is started.
"""

from __future__ import annotations

import socket
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import httpx

from canary.core import names
from canary.errors import ServingError
from canary.traffic.base import Address


@dataclass(frozen=True)
class Backend:
    """A served version: where the proxy sends its share of traffic, how to check it."""

    model: str
    version: str
    address: Address
    health_url: str | None = None
    pid: int | None = None  # set when canary started the server


class ModelServing(Protocol):
    """Makes versions reachable; every method is idempotent and may raise ServingError."""

    def start(self, model: str, version: str) -> Backend:
        """Serve ``version`` (or find it already served) and return it once healthy."""
        ...

    def stop(self, model: str, version: str) -> None:
        """Stop serving ``version``; nothing happens if it is not served by us."""
        ...

    def healthy(self, backend: Backend) -> bool:
        """True when the backend answers its health check right now."""
        ...

    def close(self) -> None:
        """Stop everything this object started."""
        ...


def template_values(model: str, version: str, port: int | None = None) -> dict[str, str]:
    """The placeholder values, each checked against its pattern; ServingError if invalid."""
    try:
        values = {
            "model": names.check(names.MODEL_NAME, model, "model name"),
            "version": names.check(names.VERSION, version, "model version"),
        }
    except ValueError as exc:
        raise ServingError(str(exc)) from exc
    if port is not None:
        if not 1 <= port <= 65535:
            raise ServingError(f"port {port} is outside 1-65535")
        values["port"] = str(port)
    return values


def placeholders(template: str) -> set[str]:
    """The ``{name}`` fields a template uses."""
    try:
        return {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise ServingError(f"invalid template {template!r}: {exc}") from exc


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill ``{name}`` fields (``{{``/``}}`` are literal braces, as in the policy's check).

    Only plain names are filled: no attribute access, no format spec, no conversion, and a
    name without a value is an error rather than an empty string.
    """
    out: list[str] = []
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ServingError(f"invalid template {template!r}: {exc}") from exc
    for literal, field, spec, conversion in parts:
        out.append(literal)
        if field is None:
            continue
        if spec or conversion or field not in values:
            raise ServingError(f"template {template!r}: cannot fill {{{field}}}")
        out.append(values[field])
    return "".join(out)


def render_address(template: str, values: Mapping[str, str]) -> Address:
    text = render(template, values)
    try:
        return Address.parse(text)
    except ValueError as exc:
        raise ServingError(f"serving.address {template!r} gave {text!r}: {exc}") from exc


def probe(backend: Backend, timeout: float = 2.0, client: httpx.Client | None = None) -> bool:
    """GET the health URL (2xx is healthy), or without one, open a TCP connection.

    Pass a long-lived ``client``: building one (its TLS context) costs tens of ms a call.
    """
    if backend.health_url is not None:
        try:
            if client is None:
                return httpx.get(backend.health_url, timeout=timeout).is_success
            return client.get(backend.health_url, timeout=timeout).is_success
        except httpx.HTTPError:
            return False
    try:
        with socket.create_connection(
            (backend.address.host, backend.address.port), timeout=timeout
        ):
            return True
    except OSError:
        return False
