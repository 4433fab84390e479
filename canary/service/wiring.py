"""Build the real backends from the settings: the one place that knows every concrete class.

Everything below the service talks through small protocols; this module picks the concrete
implementation of each (SQL store, MLflow registry, Prometheus source, Slack/webhook outbox,
the proxy and serving each policy names) and caches the per-policy ones, so a router keeps
its connection settings and a serving manager its servers across ticks.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import SecretStr

from canary.core.policy import Policy
from canary.metrics.prometheus import HttpQueryClient, PrometheusSource
from canary.notify.outbox import EnvChannels, Outbox
from canary.registry.mlflow import MlflowRegistry
from canary.service.evidence import EvidenceCache
from canary.service.telemetry import Telemetry
from canary.service.tick import TickContext
from canary.serving.base import ModelServing
from canary.serving.factory import make_serving
from canary.settings import Settings
from canary.store.sql import SqlStore
from canary.traffic.base import Router
from canary.traffic.factory import router_for

T = TypeVar("T")


class PerPolicy(Generic[T]):
    """One instance per model and configuration section, rebuilt when the section changes."""

    def __init__(self, section: str, build: Callable[[Policy], T]) -> None:
        self._section = section
        self._build = build
        self._items: dict[tuple[str, str], T] = {}
        self._lock = threading.Lock()

    def __call__(self, policy: Policy) -> T:
        config = getattr(policy, self._section)
        key = (policy.model, json.dumps(config.model_dump(mode="json"), sort_keys=True))
        with self._lock:
            item = self._items.get(key)
            if item is None:
                item = self._build(policy)
                self._items[key] = item
            return item

    def values(self) -> list[T]:
        with self._lock:
            return list(self._items.values())


@dataclass
class Runtime:
    """The wired controller parts that need closing on shutdown."""

    ctx: TickContext
    store: SqlStore
    outbox: Outbox
    channels: EnvChannels
    servings: PerPolicy[ModelServing]

    def close(self) -> None:
        self.outbox.stop()
        self.channels.close()
        for serving in self.servings.values():
            serving.close()
        self.store.close()


def build_runtime(
    settings: Settings,
    *,
    clock: Callable[[], float] = time.time,
    status_url: Callable[[str], str | None] | None = None,
) -> Runtime:
    """Open the store and make every backend; raises StoreError if the store cannot open."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    store = SqlStore(settings.effective_database_url, clock=clock)
    defaults: dict[str, str | SecretStr] = {}
    if settings.slack_webhook_url is not None:
        defaults["CANARY_SLACK_WEBHOOK_URL"] = settings.slack_webhook_url
    channels = EnvChannels(defaults=defaults, timeout=min(settings.query_timeout, 10.0))
    outbox = Outbox(store, channels, clock=clock)
    serving_env = {"MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri}
    servings: PerPolicy[ModelServing] = PerPolicy(
        "serving",
        lambda p: make_serving(p.serving, settings.state_dir / "servers", env=serving_env),
    )
    routers: PerPolicy[Router] = PerPolicy("router", lambda p: router_for(p.router))
    ctx = TickContext(
        store=store,
        registry=MlflowRegistry(settings.mlflow_tracking_uri, timeout=settings.query_timeout),
        metrics=PrometheusSource(
            HttpQueryClient(settings.prometheus_url, timeout=settings.query_timeout)
        ),
        outbox=outbox,
        router_for=routers,
        serving_for=servings,
        evidence=EvidenceCache(store),
        telemetry=Telemetry(),
        clock=clock,
        status_url=status_url or (lambda _id: None),
    )
    return Runtime(ctx, store, outbox, channels, servings)
