"""The policy reference table (field, type, default, meaning), generated from the schema.

The README and ``canary schema --markdown`` print this table, and a test checks that the
README's copy is current, so the documentation cannot drift from what ``validate`` accepts.
Meanings come from the fields' own descriptions, or from ``MEANINGS`` below for fields whose
model does not describe them.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from canary.core.durations import format_duration
from canary.core.policy import NameCheck, Policy

MEANINGS: dict[str, str] = {
    "model": "MLflow registered model this policy rolls out",
    "trigger": "which versions become candidates: exactly one of the three forms below",
    "trigger.alias": "the version holding this alias (e.g. challenger)",
    "trigger.tag": "a tag that marks candidates",
    "trigger.tag.key": "a version carrying this tag key ...",
    "trigger.tag.value": "... with this value",
    "trigger.new_versions": "any version newer than the champion",
    "champion_alias": "alias of the version in production; moved on promotion",
    "serving": "how a version becomes a backend the proxy can reach",
    "serving.ports": "port range for model servers canary starts",
    "serving.ports.first": "first port canary may give a model server it starts",
    "serving.ports.last": "last such port",
    "router": "the proxy that splits traffic; `type` picks one of the forms below",
    "router.type": "haproxy | nginx | envoy",
    "router.runtime_api": "(haproxy) unix:/path/to/admin.sock, or host:port of a TCP stats "
    "socket at level admin",
    "router.backend": "(haproxy) backend holding the champion and canary servers",
    "router.champion_server": "(haproxy) server name of the champion",
    "router.canary_server": "(haproxy) server name of the canary",
    "router.timeout": "seconds a proxy call may take before it counts as failed",
    "router.upstream": "(nginx) upstream block canary writes",
    "router.include_file": "(nginx) file holding that upstream, included by nginx.conf",
    "router.nginx": "(nginx) nginx binary used for `-t` and `-s reload`",
    "router.conf": "(nginx) main config passed as -c",
    "router.prefix": "(nginx) prefix passed as -p",
    "router.config_dir": "(envoy) folder of the route configuration Envoy watches",
    "router.route_config": "(envoy) route configuration name",
    "router.virtual_host": "(envoy) virtual host holding the weighted route",
    "router.champion_cluster": "(envoy) cluster of the champion",
    "router.canary_cluster": "(envoy) cluster of the canary",
    "router.admin": "(envoy) host:port of Envoy's admin interface; changes are confirmed there",
    "steps": "the ramp: one entry per stage, weights increasing; after the last, promote",
    "analysis": "how every tick decides",
    "analysis.version_label": "Prometheus label holding the model version",
    "analysis.max_duration": "a rollout still undecided after this long is rolled back",
    "analysis.on_query_error": "what failing Prometheus queries lead to",
    "analysis.on_query_error.then": "rollback | hold | fail once the limit is reached",
    "analysis.on_no_data": "what queries that return no samples lead to",
    "analysis.on_no_data.then": "rollback | hold | fail once `after` has passed",
    "analysis.metrics": "metrics compared between canary and champion (at least one)",
    "analysis.metrics[].name": "name used in decisions, alerts and replay files",
    "analysis.metrics[].kind": "ratio (events/total) or histogram (_bucket series)",
    "analysis.metrics[].events": "(ratio) selector of the counted events, e.g. 5xx responses",
    "analysis.metrics[].total": "(ratio) selector of all trials, e.g. all responses",
    "analysis.metrics[].buckets": "(histogram) selector of the cumulative _bucket series",
    "analysis.metrics[].worse_when": "higher | lower: which direction is a regression",
    "analysis.metrics[].tolerance": "acceptable difference; exactly one of the two below",
    "analysis.fairness": "selection-rate parity checks on the canary",
    "analysis.fairness[].name": "name used in decisions, alerts and replay files",
    "analysis.fairness[].positives": "selector of positive predictions",
    "analysis.fairness[].total": "selector of all predictions",
    "analysis.fairness[].slice_by": "label holding the group",
    "analysis.fairness[].weight": "share of alpha given to this check",
    "offline_gate": "metrics logged on the version's MLflow run, checked before any traffic",
    "offline_gate.<metric>.min": "lowest acceptable value",
    "offline_gate.<metric>.max": "highest acceptable value",
    "offline_gate.<metric>.max_drop_vs_champion": "largest acceptable drop below the champion's",
    "offline_gate.<metric>.max_rise_vs_champion": "largest acceptable rise above the champion's",
    "notify": "where events are sent",
    "notify.slack": "Slack incoming webhook",
    "notify.slack.webhook_url_env": "environment variable holding the webhook URL (a secret)",
    "notify.webhook": "generic JSON webhook",
    "notify.webhook.url_env": "environment variable holding the URL",
}


@dataclass(frozen=True)
class Row:
    path: str
    type: str
    default: str
    meaning: str


def rows() -> list[Row]:
    """Every field of the policy, depth first, in declaration order."""
    out: dict[str, Row] = {}
    _walk(Policy, "", out)
    return list(out.values())


def markdown() -> str:
    """The reference as a Markdown table."""
    lines = ["| field | type | default | meaning |", "| --- | --- | --- | --- |"]
    for row in rows():
        lines.append(f"| `{row.path}` | {row.type} | {row.default} | {row.meaning} |")
    return "\n".join(lines) + "\n"


def _walk(model: type[BaseModel], prefix: str, out: dict[str, Row]) -> None:
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        kind, children, suffix = _describe(field.annotation, field)
        if path not in out:
            out[path] = Row(path, kind, _default(field, kind), _meaning(path, field))
        elif kind not in out[path].type.split(" \\| "):
            # The same key in several variants of a union (router.type, metrics[].kind).
            row = out[path]
            out[path] = Row(path, f"{row.type} \\| {kind}", row.default, row.meaning)
        for child in children:
            _walk(child, f"{path}{suffix}.", out)


def _describe(tp: Any, field: FieldInfo | None = None) -> tuple[str, list[type[BaseModel]], str]:
    """A readable type, the models nested below it, and the path suffix to reach them."""
    metadata = list(field.metadata) if field is not None else []
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        args = typing.get_args(tp)
        metadata.extend(args[1:])
        return _describe_with(args[0], metadata)
    return _describe_with(tp, metadata)


def _describe_with(tp: Any, metadata: list[Any]) -> tuple[str, list[type[BaseModel]], str]:
    for item in metadata:
        func = getattr(item, "func", None)
        name = getattr(func, "__name__", "") or getattr(getattr(func, "func", None), "__name__", "")
        if name == "parse_duration":
            return "duration", [], ""
        if name == "_check_selector":
            return "PromQL selector", [], ""
        if isinstance(item, NameCheck):
            return "name", [], ""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _describe_with(args[0], [*metadata, *args[1:]])
    if origin is typing.Union or origin is types.UnionType:
        parts = [_describe(a) for a in args if a is not type(None)]
        models = [m for _, ms, _ in parts for m in ms]
        kinds = sorted({k for k, _, _ in parts})
        return " or ".join(kinds), models, parts[0][2] if parts else ""
    if origin is Literal:
        return " \\| ".join(str(a).lower() if isinstance(a, bool) else str(a) for a in args), [], ""
    if origin is list:
        inner, models, _ = _describe(args[0])
        return f"list of {inner}", models, "[]"
    if origin is dict:
        inner, models, _ = _describe(args[1])
        return f"map of {inner}", models, ".<metric>"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "mapping", [tp], ""
    return getattr(tp, "__name__", str(tp)), [], ""


def _default(field: FieldInfo, kind: str = "") -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    else:
        value = field.default
    if value is None or value is PydanticUndefined:
        return "—"
    if isinstance(value, BaseModel):
        return "see below"
    if isinstance(value, list | dict):
        return "all" if value and isinstance(value, list) else ("none" if not value else "…")
    if kind == "duration" and isinstance(value, int | float):
        return f"`{format_duration(value)}`"
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}"
    return f"`{value}`"


def _meaning(path: str, field: FieldInfo) -> str:
    text = MEANINGS.get(path) or field.description or ""
    return text.replace("|", "\\|")
