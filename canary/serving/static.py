"""Versions served by someone else, at an address computed from a template.

For platforms where each version already runs (a systemd unit or a deployment per version):
``serving.address: "{model}-v{version}.models.internal:8080"``. canary starts nothing and
stops nothing; it only computes the address and checks health. ``{port}`` has no meaning
here (canary only hands out ports to servers it starts) and is refused.
"""

from __future__ import annotations

import httpx

from canary.core.policy import Serving
from canary.errors import ServingError
from canary.serving.base import Backend, placeholders, probe, render, render_address
from canary.serving.base import template_values as _values


class StaticServing:
    """``ModelServing`` for versions served elsewhere."""

    def __init__(self, serving: Serving, *, probe_timeout: float = 2.0) -> None:
        if "port" in placeholders(serving.address):
            raise ServingError(
                "serving.address uses {port} but serving.start is not set: "
                "canary picks ports only for servers it starts"
            )
        self._serving = serving
        self._probe_timeout = probe_timeout
        self._http = httpx.Client()

    def start(self, model: str, version: str) -> Backend:
        values = _values(model, version)
        address = render_address(self._serving.address, values)
        health = (
            render(self._serving.health, {**values, "address": str(address)})
            if self._serving.health
            else None
        )
        return Backend(model, version, address, health)

    def stop(self, model: str, version: str) -> None:
        """Nothing to stop: the version's server is not ours."""

    def healthy(self, backend: Backend) -> bool:
        if self._http.is_closed:
            self._http = httpx.Client()
        return probe(backend, self._probe_timeout, self._http)

    def close(self) -> None:
        self._http.close()
