"""The rollout policy: what a team writes in YAML to say how a model version goes live.

One policy per registered model. It says which versions to pick up (trigger), how to serve
them, which proxy shifts traffic, the steps of the ramp, and the analysis that decides at
every tick. The schema is strict on purpose (unknown keys are errors, names that end up in
PromQL, proxy configs or command lines must match narrow patterns) because a typo in a
canary policy is found either now, by ``canary validate``, or in production.

Loading with line numbers lives in ``canary.core.policy_errors``; this module is only the
schema, so it can be imported by the pure layers at no cost.
"""

from __future__ import annotations

import itertools
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    Tag,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import core_schema

from canary.core import names
from canary.core.durations import DURATION_PATTERN, parse_duration
from canary.core.promql import Selector, SelectorError, parse_selector


class StrictModel(BaseModel):
    """Base of every policy model: unknown keys are errors and values cannot change."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


# --- field types -------------------------------------------------------------------------

Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": DURATION_PATTERN},
            ],
            "description": "A duration: seconds, or a string such as 15s, 10m, 2h, 1h30m, 500ms.",
        }
    ),
]


@dataclass(frozen=True)
class NameCheck:
    """pydantic metadata: the string must match ``pattern``; the error says what and how."""

    pattern: re.Pattern[str]
    what: str
    hint: str

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self.validate, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        json_schema = handler(schema)
        json_schema["pattern"] = self.pattern.pattern
        return json_schema

    def validate(self, value: str) -> str:
        if not self.pattern.fullmatch(value):
            raise ValueError(f"invalid {self.what} {value!r}: {self.hint}")
        return value


ModelName = Annotated[
    str,
    NameCheck(
        names.MODEL_NAME,
        "model name",
        "use letters, digits, '.', '_' and '-' only, up to 128 characters "
        "(it goes into PromQL queries and proxy configs)",
    ),
]
AliasName = Annotated[
    str,
    NameCheck(
        names.ALIAS, "alias", "use letters, digits, '_' and '-', starting with a letter or '_'"
    ),
]
TagKey = Annotated[
    str, NameCheck(names.TAG_KEY, "tag key", "use letters, digits, '_', '.', '-' and '/'")
]
TagValue = Annotated[
    str,
    NameCheck(
        names.TAG_VALUE, "tag value", "use letters, digits, spaces and '_', '.', '-', ':', '/'"
    ),
]
LabelName = Annotated[
    str,
    NameCheck(
        names.LABEL_NAME,
        "label name",
        "a Prometheus label name: letters, digits and '_', not starting with a digit or '__'",
    ),
]
ProxyName = Annotated[
    str,
    NameCheck(
        names.PROXY_NAME,
        "proxy name",
        "use letters, digits, '_', '.' and '-', starting with a letter or '_' (it goes into a "
        "proxy config and runtime commands)",
    ),
]
EnvName = Annotated[
    str,
    NameCheck(
        names.ENV_NAME, "environment variable name", "use upper-case letters, digits and '_'"
    ),
]
CheckName = Annotated[
    str,
    NameCheck(
        names.POLICY_NAME,
        "name",
        "use lower-case letters, digits and '_', starting with a letter (at most 64 characters)",
    ),
]
GateMetricName = Annotated[
    str,
    NameCheck(
        re.compile(r"^[A-Za-z0-9_.\-/ ]{1,250}$"),
        "MLflow metric name",
        "use letters, digits, spaces and '_', '.', '-', '/'",
    ),
]


def _check_selector(value: str) -> str:
    try:
        parse_selector(value)
    except SelectorError as exc:
        raise ValueError(f"invalid PromQL selector: {exc}") from None
    return value


PromSelector = Annotated[
    str,
    AfterValidator(_check_selector),
    WithJsonSchema(
        {
            "type": "string",
            "description": 'A PromQL instant-vector selector: metric{label="value", ...}',
        }
    ),
]

Fraction = Annotated[float, Field(gt=0, lt=1)]
Percent = Annotated[float, Field(gt=0, le=100)]
PositiveFloat = Annotated[float, Field(gt=0)]

EventName = Literal[
    "started",
    "rejected",
    "advanced",
    "paused",
    "resumed",
    "promoted",
    "rolled_back",
    "aborted",
    "failed",
]
ALL_EVENTS: tuple[EventName, ...] = (
    "started",
    "rejected",
    "advanced",
    "paused",
    "resumed",
    "promoted",
    "rolled_back",
    "aborted",
    "failed",
)


# --- trigger -----------------------------------------------------------------------------


class AliasTrigger(StrictModel):
    """Pick up the version that holds this alias (e.g. ``challenger``)."""

    alias: AliasName


class TagMatch(StrictModel):
    key: TagKey
    value: TagValue


class TagTrigger(StrictModel):
    """Pick up a version that carries this tag with this value."""

    tag: TagMatch


class NewVersionsTrigger(StrictModel):
    """Pick up any version newer than the champion."""

    new_versions: Literal[True]


def _trigger_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        for key in ("alias", "tag", "new_versions"):
            if key in value:
                return key
        return None
    if isinstance(value, AliasTrigger):
        return "alias"
    if isinstance(value, TagTrigger):
        return "tag"
    if isinstance(value, NewVersionsTrigger):
        return "new_versions"
    return None


Trigger = Annotated[
    Annotated[AliasTrigger, Tag("alias")]
    | Annotated[TagTrigger, Tag("tag")]
    | Annotated[NewVersionsTrigger, Tag("new_versions")],
    Discriminator(
        _trigger_kind,
        custom_error_type="invalid_trigger",
        custom_error_message="a trigger is one of {alias: NAME}, {tag: {key: K, value: V}} "
        "or {new_versions: true}",
    ),
]


# --- serving -----------------------------------------------------------------------------

_PLACEHOLDERS = {"model", "version", "port"}


def _check_template(value: str, allowed: set[str]) -> str:
    if "\n" in value or "\r" in value or "\x00" in value:
        raise ValueError("a template must be one line")
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
    except ValueError as exc:
        raise ValueError(f"invalid template {value!r}: {exc}") from None
    for name in fields:
        if name not in allowed:
            known = ", ".join("{" + a + "}" for a in sorted(allowed))
            raise ValueError(f"unknown placeholder {{{name}}} in {value!r}; known: {known}")
    return value


class PortRange(StrictModel):
    """Loopback ports canary may give to model servers it starts."""

    first: int = Field(18000, ge=1024, le=65535)
    last: int = Field(18999, ge=1024, le=65535)

    @model_validator(mode="after")
    def _ordered(self) -> PortRange:
        if self.last < self.first:
            raise ValueError("ports.last must be at least ports.first")
        return self


class Serving(StrictModel):
    """How a model version becomes a backend the proxy can reach."""

    address: str = Field(
        description="host:port template of a version's server; placeholders {model}, "
        "{version}, {port}",
    )
    start: list[str] | None = Field(
        None,
        min_length=1,
        description="argv template that starts a server for a version (run without a shell)",
    )
    health: str | None = Field(
        None, description="URL template polled until the server is ready; adds {address}"
    )
    ports: PortRange = PortRange()
    ready_timeout: Duration = Field(120.0, gt=0, description="seconds to wait for health")

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        _check_template(value, _PLACEHOLDERS)
        if ":" not in value:
            raise ValueError(f"address {value!r} must be host:port")
        # The text around the placeholders is fixed: filled with plain sample values it must
        # already be host:port, or a space, ';' or path in it would only be refused when the
        # first version is started, with a rollout already under way.
        if not _HOST_PORT.fullmatch(value.format(model="model", version="1", port="18000")):
            raise ValueError(f"address {value!r} must be host:port with a host name or IP address")
        return value

    @field_validator("start")
    @classmethod
    def _start(cls, value: list[str] | None) -> list[str] | None:
        for arg in value or []:
            _check_template(arg, _PLACEHOLDERS)
        return value

    @field_validator("health")
    @classmethod
    def _health(cls, value: str | None) -> str | None:
        if value is not None:
            _check_template(value, _PLACEHOLDERS | {"address"})
            if not value.startswith(("http://", "https://")):
                raise ValueError("health must be an http:// or https:// URL template")
        return value

    @model_validator(mode="after")
    def _port_needs_start(self) -> Serving:
        if self.start and "{port}" not in self.address:
            raise ValueError("with a start command, address must contain {port}")
        if not self.start and "{port}" in self.address:
            raise ValueError(
                "address uses {port}, which only a start command gives; use a fixed port "
                "or add serving.start"
            )
        return self


# --- routers -----------------------------------------------------------------------------

_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:]+\]|[A-Za-z0-9.\-]+):[0-9]{1,5}$")
_RUNTIME_API = re.compile(
    r"^(unix:/[^\s\x00]+|(tcp:)?(\[[0-9A-Fa-f:]+\]|[A-Za-z0-9.\-]+):[0-9]{1,5})$"
)


def _check_path(value: str) -> str:
    if not value or any(c in value for c in "\n\r\x00"):
        raise ValueError("a path must be one non-empty line")
    return value


FilePath = Annotated[str, AfterValidator(_check_path)]


class HAProxyRouter(StrictModel):
    """HAProxy through its runtime API: weights change without a reload."""

    type: Literal["haproxy"]
    runtime_api: str = Field(
        description="unix:/path/to/admin.sock, or host:port of a TCP stats socket (level admin)"
    )
    backend: ProxyName
    champion_server: ProxyName = "champion"
    canary_server: ProxyName = "canary"
    timeout: Duration = Field(5.0, gt=0)

    @field_validator("runtime_api")
    @classmethod
    def _runtime_api(cls, value: str) -> str:
        if not _RUNTIME_API.fullmatch(value):
            raise ValueError(
                f"invalid runtime_api {value!r}: write unix:/path/to/socket or host:port"
            )
        return value


class NginxRouter(StrictModel):
    """nginx: an upstream include file rewritten, checked with ``nginx -t``, then reloaded."""

    type: Literal["nginx"]
    upstream: ProxyName
    include_file: FilePath
    nginx: FilePath = "nginx"
    conf: FilePath | None = None
    prefix: FilePath | None = None
    timeout: Duration = Field(10.0, gt=0)


class EnvoyRouter(StrictModel):
    """Envoy: weighted clusters in a route configuration file that Envoy watches."""

    type: Literal["envoy"]
    config_dir: FilePath
    route_config: ProxyName
    virtual_host: ProxyName = "default"
    champion_cluster: ProxyName = "champion"
    canary_cluster: ProxyName = "canary"
    admin: str | None = Field(
        None,
        description="(envoy) host:port of Envoy's admin interface; when set, every change "
        "is confirmed in Envoy's config_dump and a rejected one is rolled back",
    )
    timeout: Duration = Field(10.0, gt=0)

    @field_validator("admin")
    @classmethod
    def _admin(cls, value: str | None) -> str | None:
        if value is not None and not _HOST_PORT.fullmatch(value):
            raise ValueError(f"invalid admin address {value!r}: write host:port")
        return value


Router = Annotated[HAProxyRouter | NginxRouter | EnvoyRouter, Field(discriminator="type")]


# --- steps -------------------------------------------------------------------------------


class Step(StrictModel):
    """One stage of the ramp: the canary's share of traffic and what it must see first."""

    weight: Percent = Field(description="canary share of traffic during the step, percent")
    min_duration: Duration | None = Field(
        None, description="the step lasts at least this long (default: one analysis interval)"
    )
    min_requests: int | None = Field(
        None, ge=0, description="canary requests the step must serve before it may advance"
    )


# --- analysis ----------------------------------------------------------------------------

Worse = Literal["higher", "lower"]
Outcome = Literal["rollback", "hold", "fail"]


class Tolerance(StrictModel):
    """How much worse the canary may be and still be acceptable (exactly one is set)."""

    relative: float | None = Field(
        None, ge=0, le=10, description="e.g. 0.10: up to 10% worse than the baseline's rate"
    )
    absolute: float | None = Field(
        None, ge=0, lt=1, description="e.g. 0.02: up to 0.02 worse than the baseline's rate"
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Tolerance:
        if (self.relative is None) == (self.absolute is None):
            raise ValueError("set exactly one of tolerance.relative or tolerance.absolute")
        return self


def _selector_of(text: str) -> Selector:
    return parse_selector(text)


class _MetricBase(StrictModel):
    name: CheckName
    worse_when: Worse
    tolerance: Tolerance | None = None
    slice_by: LabelName | None = Field(
        None, description="also test each value of this label on its own (e.g. group)"
    )
    weight: PositiveFloat = Field(
        1.0, description="share of alpha given to this metric, relative to the others"
    )


class RatioMetric(_MetricBase):
    """A rate: events / total (errors / requests, correct / labelled)."""

    kind: Literal["ratio"]
    events: PromSelector
    total: PromSelector

    def selectors(self) -> list[Selector]:
        return [_selector_of(self.events), _selector_of(self.total)]


class HistogramMetric(_MetricBase):
    """A Prometheus histogram (cumulative ``_bucket`` series), e.g. latency."""

    kind: Literal["histogram"]
    buckets: PromSelector
    worse_when: Worse = "higher"

    @field_validator("buckets")
    @classmethod
    def _bucket_series(cls, value: str) -> str:
        selector = parse_selector(value)
        if not selector.metric.endswith("_bucket"):
            raise ValueError(
                f"buckets must select a histogram's _bucket series, not {selector.metric!r}"
            )
        if "le" in selector.labels():
            raise ValueError("buckets must not match on 'le': canary reads every bucket")
        return value

    def selectors(self) -> list[Selector]:
        return [_selector_of(self.buckets)]


Metric = Annotated[RatioMetric | HistogramMetric, Field(discriminator="kind")]


class FairnessCheck(StrictModel):
    """Selection-rate parity across the values of a label, checked on the canary."""

    name: CheckName
    positives: PromSelector
    total: PromSelector
    slice_by: LabelName
    min_ratio: float | None = Field(
        0.8,
        gt=0,
        le=1,
        description="canary's lowest/highest selection rate across groups must stay above "
        "this (0.8 is the four-fifths rule)",
    )
    max_gap_increase: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="canary's parity gap (max - min selection rate) may exceed the "
        "baseline's by at most this",
    )
    weight: PositiveFloat = 1.0

    @model_validator(mode="after")
    def _some_rule(self) -> FairnessCheck:
        if self.min_ratio is None and self.max_gap_increase is None:
            raise ValueError("set min_ratio, max_gap_increase or both")
        return self

    def selectors(self) -> list[Selector]:
        return [_selector_of(self.positives), _selector_of(self.total)]


class QueryErrorPolicy(StrictModel):
    """What to do when Prometheus queries keep failing."""

    consecutive_limit: int = Field(4, ge=1, description="failed ticks in a row before acting")
    then: Outcome = "rollback"


class NoDataPolicy(StrictModel):
    """What to do when queries succeed but return no samples."""

    after: Duration = Field(600.0, gt=0, description="how long without data before acting")
    then: Outcome = "rollback"


class Analysis(StrictModel):
    """How every tick decides: the metrics, their tests and the error budget."""

    interval: Duration = Field(15.0, ge=1, description="seconds between ticks")
    alpha: float = Field(
        0.05, gt=0, le=0.2, description="probability bound of rolling back a good canary"
    )
    power: float = Field(
        0.8, gt=0, lt=1, description="target power behind the minimum sample to promote"
    )
    version_label: LabelName = "version"
    max_duration: Duration = Field(7200.0, gt=0)
    on_query_error: QueryErrorPolicy = QueryErrorPolicy()
    on_no_data: NoDataPolicy = NoDataPolicy()
    metrics: list[Metric] = Field(min_length=1)
    fairness: list[FairnessCheck] = []

    @model_validator(mode="after")
    def _consistent(self) -> Analysis:
        seen: set[str] = set()
        for item in [*self.metrics, *self.fairness]:
            if item.name in seen:
                raise ValueError(f"duplicate metric name {item.name!r}")
            seen.add(item.name)
            for selector in item.selectors():
                if self.version_label in selector.labels():
                    raise ValueError(
                        f"{item.name}: selector {selector.metric} matches on the version label "
                        f"{self.version_label!r}; remove it, canary adds it per arm"
                    )
        if self.max_duration < self.interval:
            raise ValueError("max_duration must be at least one interval")
        return self


# --- offline gate and notifications ------------------------------------------------------


class GateRule(StrictModel):
    """Bounds on one metric logged on the version's MLflow run."""

    min: float | None = None
    max: float | None = None
    max_drop_vs_champion: float | None = Field(None, ge=0)
    max_rise_vs_champion: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _some_bound(self) -> GateRule:
        if all(
            v is None
            for v in (self.min, self.max, self.max_drop_vs_champion, self.max_rise_vs_champion)
        ):
            raise ValueError(
                "set at least one of min, max, max_drop_vs_champion, max_rise_vs_champion"
            )
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not exceed max")
        return self


class SlackNotify(StrictModel):
    """Slack incoming webhook; the URL is a secret read from the environment."""

    webhook_url_env: EnvName = "CANARY_SLACK_WEBHOOK_URL"
    events: list[EventName] = Field(
        default_factory=lambda: list(ALL_EVENTS), description="events that are sent"
    )


class WebhookNotify(StrictModel):
    """A generic JSON webhook; the URL is read from the environment."""

    url_env: EnvName = "CANARY_WEBHOOK_URL"
    events: list[EventName] = Field(
        default_factory=lambda: list(ALL_EVENTS), description="events that are sent"
    )


class Notify(StrictModel):
    slack: SlackNotify | None = None
    webhook: WebhookNotify | None = None


# --- the policy --------------------------------------------------------------------------


class Policy(StrictModel):
    """A rollout policy for one registered model."""

    model: ModelName
    trigger: Trigger
    champion_alias: AliasName = "champion"
    serving: Serving
    router: Router
    steps: list[Step] = Field(min_length=1)
    analysis: Analysis
    offline_gate: dict[GateMetricName, GateRule] = {}
    notify: Notify = Notify()

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: list[Step]) -> list[Step]:
        for before, after in itertools.pairwise(steps):
            if after.weight <= before.weight:
                raise ValueError(
                    f"step weights must increase: {after.weight:g} follows {before.weight:g}"
                )
        return steps

    @model_validator(mode="after")
    def _trigger_is_not_champion(self) -> Policy:
        if isinstance(self.trigger, AliasTrigger) and self.trigger.alias == self.champion_alias:
            raise ValueError("trigger.alias must differ from champion_alias")
        return self

    def all_analysis_names(self) -> list[str]:
        """Names of every metric and fairness check, in policy order."""
        return [m.name for m in self.analysis.metrics] + [f.name for f in self.analysis.fairness]


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema of a policy, for editors and CI checks of YAML files."""
    schema = Policy.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "canary rollout policy"
    return schema


def load_policy(path: str | Path) -> Policy:
    """Read and validate one policy file; raise PolicyError with file:line:column problems."""
    from canary.core.policy_loader import load_policy as _load

    return _load(path)


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Validate a policy from YAML text; raise PolicyError with line:column problems."""
    from canary.core.policy_loader import parse_policy as _parse

    return _parse(text, source)
