"""The registry on an MLflow tracking server, through ``mlflow.MlflowClient`` (mlflow-skinny).

MLflow 3 conventions: the champion is an alias (stages are deprecated), and aliases are read
from the registered model, because ``search_model_versions`` answers with ``aliases=[]``.
Search filters only accept name, run_id, source_path, version_number and ``tags.*``, which is
all the triggers need.

Failing fast: by default MLflow's client retries a failed request 7 times with exponential
backoff and waits 120 s for an answer, so a controller talking to a down server would hang
for minutes inside one tick. MLflow reads these settings from the environment at every
request and has no per-client knob, so ``MlflowRegistry`` sets ``MLFLOW_HTTP_REQUEST_TIMEOUT``
and ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` for the process (the controller owns its process).
Every failure becomes a ``RegistryError``; retrying is the caller's job (see ``retry.py``).

Every write reads first and only writes what differs, so running it again changes nothing:
a tick interrupted between two writes is simply run again.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from canary.core import names
from canary.core.policy import AliasTrigger, Policy, TagTrigger
from canary.errors import RegistryError
from canary.log import get_logger
from canary.registry.base import (
    MAX_REASON_CHARS,
    TAG_PREVIOUS_CHAMPION,
    TAG_REASON,
    TAG_ROLLOUT_ID,
    TAG_STATUS,
    Dataset,
    ModelVersion,
    Outcome,
    VersionDetails,
    VersionStatus,
)

log = get_logger(__name__)

T = TypeVar("T")

# MLflow run ids and logged-model ids are hex; other stores use similar short tokens.
RUN_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
# A version registered from a logged model (MLflow 3) has source "models:/m-<hex>".
_LOGGED_MODEL_SOURCE = re.compile(r"^models:/(m-[0-9a-f]{32})$")
_NOT_FOUND = "RESOURCE_DOES_NOT_EXIST"
_PAGE_SIZE = 1000
_MAX_SOURCE_CHARS = 300


class MlflowRegistry:
    """``Registry`` on an MLflow tracking server.

    ``timeout`` (seconds, rounded up to whole seconds as MLflow wants) bounds every request;
    ``max_retries`` is MLflow's own retry count, 0 by default because the caller retries with
    backoff between ticks instead of blocking inside one.
    """

    def __init__(self, tracking_uri: str, *, timeout: float = 5.0, max_retries: int = 0) -> None:
        if timeout <= 0 or max_retries < 0:
            raise ValueError("timeout must be positive and max_retries non-negative")
        os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(1, math.ceil(timeout)))
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(max_retries)
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        from mlflow import MlflowClient  # imported late: ~1.5 s, only when a registry is built

        self._uri = tracking_uri
        self._client: Any = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        log.info(
            "registry.mlflow_configured",
            tracking_uri=_without_credentials(tracking_uri),
            timeout=timeout,
            max_retries=max_retries,
        )

    # --- reading --------------------------------------------------------------------------

    def champion(self, policy: Policy) -> ModelVersion | None:
        model = names.check(names.MODEL_NAME, policy.model, "model name")
        aliases = self._aliases(model)
        if aliases is None:
            return None
        number = aliases.get(policy.champion_alias)
        return None if number is None else self._version(model, number, aliases)

    def candidates(self, policy: Policy) -> list[ModelVersion]:
        model = names.check(names.MODEL_NAME, policy.model, "model name")
        aliases = self._aliases(model)
        if aliases is None:
            log.warning("registry.model_not_found", model=model)
            return []
        champion = aliases.get(policy.champion_alias)
        trigger = policy.trigger
        found: list[ModelVersion]
        if isinstance(trigger, AliasTrigger):
            alias = names.check(names.ALIAS, trigger.alias, "alias")
            number = aliases.get(alias)
            found = [] if number is None else [self._version(model, number, aliases)]
        elif isinstance(trigger, TagTrigger):
            key = names.check(names.TAG_KEY, trigger.tag.key, "tag key")
            value = names.check(names.TAG_VALUE, trigger.tag.value, "tag value")
            found = [
                v
                for v in self._search(model, f"tags.`{key}` = '{value}'", aliases)
                if v.tags.get(key) == value
            ]
        else:
            if champion is None:
                # "Newer than the champion" means nothing without one: a first champion is
                # chosen by a person, there is no baseline to canary against.
                log.info("registry.no_champion", model=model, alias=policy.champion_alias)
                return []
            found = [
                v
                for v in self._search(model, f"version_number > {int(champion)}", aliases)
                if v.number > int(champion)
            ]
        ready = [v for v in found if v.version != champion and not _is_done(v)]
        return sorted(ready, key=lambda v: v.number, reverse=True)

    def details(self, model: str, version: str) -> VersionDetails:
        names.check(names.MODEL_NAME, model, "model name")
        names.check(names.VERSION, version, "model version")
        raw = self._call("get_model_version", self._client.get_model_version, model, version)
        info = self._to_version(raw, {})
        metrics: dict[str, float] = {}
        datasets: tuple[Dataset, ...] = ()
        run_name: str | None = None
        if info.run_id is not None:
            run = self._call("get_run", self._client.get_run, info.run_id)
            metrics.update({str(k): float(v) for k, v in run.data.metrics.items()})
            datasets = tuple(_dataset(d) for d in (run.inputs.dataset_inputs or []))
            run_name = run.info.run_name or None
        model_id = getattr(raw, "model_id", None) or _logged_model_id(info.source)
        if model_id is not None and RUN_ID.fullmatch(model_id):
            # MLflow 3's evaluate() logs results on the logged model, possibly from another
            # run than the training one: those numbers are the evaluation, so they win.
            metrics.update(self._logged_model_metrics(model_id))
        return VersionDetails(info, metrics, datasets, run_name)

    # --- writing --------------------------------------------------------------------------

    def record(self, policy: Policy, version: str, outcome: Outcome) -> tuple[str, ...]:
        model = names.check(names.MODEL_NAME, policy.model, "model name")
        names.check(names.VERSION, version, "model version")
        aliases = self._aliases(model)
        if aliases is None:
            raise RegistryError(f"registered model {model!r} does not exist")
        current = self._version(model, version, aliases)
        if outcome.status is VersionStatus.IN_PROGRESS and _is_done(current):
            log.warning("registry.status_kept", model=model, version=version, status=current.status)
            return ()
        changes: list[str] = []
        if outcome.status is VersionStatus.PROMOTED:
            previous = aliases.get(policy.champion_alias)
            if previous is not None and previous != version:
                # Written before the alias moves, so an interrupted promotion still knows
                # which champion to restore when it runs again.
                self._set_tag(current, TAG_PREVIOUS_CHAMPION, previous, changes)
        self._set_tag(current, TAG_STATUS, outcome.status.value, changes)
        if outcome.rollout_id is not None:
            self._set_tag(current, TAG_ROLLOUT_ID, outcome.rollout_id, changes)
        if outcome.reason:
            self._set_tag(current, TAG_REASON, outcome.reason[:MAX_REASON_CHARS], changes)
        if outcome.status is VersionStatus.PROMOTED and aliases.get(policy.champion_alias) != (
            version
        ):
            alias = names.check(names.ALIAS, policy.champion_alias, "alias")
            self._call(
                "set_registered_model_alias",
                self._client.set_registered_model_alias,
                model,
                alias,
                version,
            )
            changes.append(f"alias {alias} -> {version}")
        if outcome.status.done and isinstance(policy.trigger, AliasTrigger):
            trigger_alias = names.check(names.ALIAS, policy.trigger.alias, "alias")
            # Only if it still points here: a newer challenger may already hold it.
            if aliases.get(trigger_alias) == version:
                self._call(
                    "delete_registered_model_alias",
                    self._client.delete_registered_model_alias,
                    model,
                    trigger_alias,
                )
                changes.append(f"alias {trigger_alias} removed")
        log.info(
            "registry.outcome_recorded",
            model=model,
            version=version,
            status=outcome.status.value,
            rollout_id=outcome.rollout_id,
            changes=changes,
        )
        return tuple(changes)

    # --- helpers --------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call the MLflow client; any failure becomes a RegistryError naming the call."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise RegistryError(f"MLflow {what} failed: {_short(exc)}") from exc

    def _aliases(self, model: str) -> dict[str, str] | None:
        """alias -> version for the model, or None if the model is not registered."""
        try:
            registered = self._client.get_registered_model(model)
        except Exception as exc:
            if getattr(exc, "error_code", None) == _NOT_FOUND:
                return None
            raise RegistryError(f"MLflow get_registered_model failed: {_short(exc)}") from exc
        aliases: dict[str, str] = {}
        for alias, number in (registered.aliases or {}).items():
            if not names.ALIAS.fullmatch(str(alias)):
                log.warning("registry.alias_ignored", model=model, alias=str(alias)[:64])
                continue
            aliases[str(alias)] = _checked_version(number, f"alias {alias}")
        return aliases

    def _version(self, model: str, number: str, aliases: Mapping[str, str]) -> ModelVersion:
        raw = self._call("get_model_version", self._client.get_model_version, model, number)
        return self._to_version(raw, aliases)

    def _search(self, model: str, condition: str, aliases: Mapping[str, str]) -> list[ModelVersion]:
        query = f"name = '{model}' and {condition}"
        found: list[ModelVersion] = []
        token: str | None = None
        while True:
            page = self._call(
                "search_model_versions",
                self._client.search_model_versions,
                filter_string=query,
                max_results=_PAGE_SIZE,
                page_token=token,
            )
            found.extend(self._to_version(raw, aliases) for raw in page if raw.name == model)
            token = getattr(page, "token", None)
            if not token:
                return found

    def _to_version(self, raw: Any, aliases: Mapping[str, str]) -> ModelVersion:
        version = _checked_version(raw.version, "version")
        try:
            model = names.check(names.MODEL_NAME, str(raw.name), "model name")
        except ValueError as exc:
            raise RegistryError(str(exc)) from exc
        run_id = raw.run_id or None
        if run_id is not None and not RUN_ID.fullmatch(str(run_id)):
            raise RegistryError(f"version {version} has an invalid run id {str(run_id)[:80]!r}")
        return ModelVersion(
            model=model,
            version=version,
            source=str(raw.source or ""),
            run_id=run_id,
            created_ms=int(raw.creation_timestamp or 0),
            tags={str(k): str(v) for k, v in (raw.tags or {}).items()},
            aliases=tuple(sorted(a for a, n in aliases.items() if n == version)),
        )

    def _set_tag(self, version: ModelVersion, key: str, value: str, changes: list[str]) -> None:
        if version.tags.get(key) == value:
            return
        self._call(
            "set_model_version_tag",
            self._client.set_model_version_tag,
            version.model,
            version.version,
            key,
            value,
        )
        changes.append(f"tag {key}={value[:60]}")

    def _logged_model_metrics(self, model_id: str) -> dict[str, float]:
        """Latest value per key of the metrics logged on an MLflow 3 logged model."""
        try:
            logged = self._client.get_logged_model(model_id)
        except Exception as exc:
            if getattr(exc, "error_code", None) == _NOT_FOUND:
                return {}
            raise RegistryError(f"MLflow get_logged_model failed: {_short(exc)}") from exc
        latest: dict[str, tuple[int, int, float]] = {}
        for metric in logged.metrics or []:
            stamp = (int(metric.timestamp or 0), int(metric.step or 0), float(metric.value))
            if metric.key not in latest or stamp[:2] >= latest[metric.key][:2]:
                latest[str(metric.key)] = stamp
        return {key: value for key, (_, _, value) in latest.items()}


def _is_done(version: ModelVersion) -> bool:
    status = version.status
    return status is not None and status.done


def _checked_version(value: object, what: str) -> str:
    text = str(value)
    if not names.VERSION.fullmatch(text):
        raise RegistryError(f"{what}: invalid model version {text[:40]!r}")
    return text


def _logged_model_id(source: str) -> str | None:
    match = _LOGGED_MODEL_SOURCE.fullmatch(source)
    return match.group(1) if match else None


def _dataset(item: Any) -> Dataset:
    tags: Iterable[Any] = item.tags or []
    context = next((t.value for t in tags if t.key == "mlflow.data.context"), None)
    data = item.dataset
    return Dataset(
        name=str(data.name),
        digest=str(data.digest or ""),
        source=_readable_source(str(data.source or "")),
        source_type=str(data.source_type or ""),
        context=str(context) if context is not None else None,
    )


def _readable_source(source: str) -> str:
    """MLflow stores a dataset source as JSON ({"uri": ...}); show the location only."""
    try:
        parsed = json.loads(source)
    except ValueError:
        return source[:_MAX_SOURCE_CHARS]
    if isinstance(parsed, Mapping):
        for key in ("uri", "url", "path", "table_name", "source"):
            if isinstance(parsed.get(key), str):
                return str(parsed[key])[:_MAX_SOURCE_CHARS]
    return source[:_MAX_SOURCE_CHARS]


def _without_credentials(uri: str) -> str:
    """The URI as it may be logged: any user:password@ part removed."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


_USERINFO = re.compile(r"//[^/@\s]+@")


def _short(exc: BaseException) -> str:
    """The error on one line, cut short, with any user:password@ in a URL removed."""
    text = _USERINFO.sub("//", " ".join(str(exc).split()))
    return text[:300] + ("..." if len(text) > 300 else "")


__all__ = ["MlflowRegistry"]
