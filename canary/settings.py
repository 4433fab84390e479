"""Service settings: where things are and how the daemon behaves, not how a rollout goes.

Rollout behaviour lives in policies (one YAML file per model, reloadable); these settings
are the daemon's own: addresses of MLflow and Prometheus, the state directory, the HTTP API,
secrets. They come from environment variables prefixed ``CANARY_`` and, optionally, a YAML
settings file (``CANARY_SETTINGS_FILE`` or ``--settings``); the environment wins, so a
container can override one value without copying the file. Secrets are ``SecretStr``: they
print as ``**********`` and are never logged.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from canary.core.durations import parse_duration
from canary.errors import SettingsError

SETTINGS_FILE_ENV = "CANARY_SETTINGS_FILE"


class Settings(BaseSettings):
    """Every field documents its unit, its default and why it has that default."""

    model_config = SettingsConfigDict(
        env_prefix="CANARY_",
        extra="forbid",
        frozen=True,
        validate_default=True,
    )

    policies: Path = Field(
        Path("/etc/canary/policies"),
        description="Folder (or one file) of rollout policies, *.yaml. Default: the "
        "packaged service's config folder. Reloaded on SIGHUP.",
    )
    state_dir: Path = Field(
        Path("/var/lib/canary"),
        description="Folder for the SQLite store and the leader lock. Default matches the "
        "systemd unit's StateDirectory=canary.",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the store; default: sqlite in state_dir. Use "
        "postgresql+psycopg://... for several controllers on one store.",
    )
    mlflow_tracking_uri: str = Field(
        "http://127.0.0.1:5000",
        description="MLflow tracking server the registry is read from. Default: MLflow's "
        "own default port on loopback.",
    )
    prometheus_url: str = Field(
        "http://127.0.0.1:9090",
        description="Prometheus HTTP API base URL. Default: Prometheus's default port.",
    )
    registry_poll_interval: float = Field(
        30.0,
        gt=0,
        description="Seconds between looks at the registry for new versions. 30 s: new "
        "versions are rare; a shorter poll only loads MLflow.",
    )
    query_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds before a Prometheus or MLflow call is abandoned and counted "
        "as a failed measurement. Shorter than the default 15 s analysis interval.",
    )
    api_host: str = Field(
        "127.0.0.1",
        description="Address the HTTP API binds to. Loopback by default: expose it on "
        "purpose, behind a token.",
    )
    api_port: int = Field(8181, ge=0, le=65535, description="HTTP API port (0: pick one).")
    api_token: SecretStr | None = Field(
        None,
        description="Bearer token required by every state-changing API call. No default: "
        "without it those calls are refused.",
    )
    slack_webhook_url: SecretStr | None = Field(
        None,
        description="Default Slack incoming-webhook URL, used by policies that enable Slack "
        "without naming their own environment variable. Secret.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Lowest level written."
    )
    log_format: Literal["auto", "json", "console"] = Field(
        "auto",
        description="auto: JSON lines when stdout is not a terminal (journald, containers), "
        "a readable console otherwise.",
    )
    shutdown_grace: float = Field(
        30.0,
        gt=0,
        description="Seconds SIGTERM waits for the current ticks to finish before exiting.",
    )

    leader_lease: float = Field(
        15.0,
        ge=1,
        description="Seconds a leader's lease lasts when the store is PostgreSQL (a file lock "
        "on SQLite needs none). A standby takes over at most this long (plus one try, at most "
        "1 s) after the leader dies; the leader stops acting after 80 % of it without a "
        "renewal. 15 s: one default analysis interval, so a dead leader costs about one tick.",
    )
    leader_renew_interval: float = Field(
        5.0,
        gt=0,
        description="Seconds between lease renewals (PostgreSQL store). At most a third of "
        "leader_lease, so two renewals in a row can fail before the leader has to stop.",
    )

    @field_validator(
        "registry_poll_interval",
        "query_timeout",
        "shutdown_grace",
        "leader_lease",
        "leader_renew_interval",
        mode="before",
    )
    @classmethod
    def _durations(cls, value: Any) -> float:
        return parse_duration(value)

    @model_validator(mode="after")
    def _renewals_fit_in_the_lease(self) -> Settings:
        if self.leader_renew_interval * 3 > self.leader_lease:
            raise ValueError(
                f"leader_renew_interval ({self.leader_renew_interval:g}s) must be at most a "
                f"third of leader_lease ({self.leader_lease:g}s)"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        settings_file = os.environ.get(SETTINGS_FILE_ENV)
        if settings_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=settings_file))
        return tuple(sources)

    @property
    def effective_database_url(self) -> str:
        """The store URL: the configured one, or SQLite in the state directory."""
        return self.database_url or f"sqlite:///{self.state_dir / 'canary.db'}"

    def public(self) -> dict[str, Any]:
        """Settings safe to show or log: secrets replaced by whether they are set."""
        data = self.model_dump()
        for name in ("api_token", "slack_webhook_url"):
            data[name] = "set" if getattr(self, name) is not None else "unset"
        if self.database_url and "@" in self.database_url:
            scheme, _, rest = self.database_url.partition("://")
            data["database_url"] = f"{scheme}://***@{rest.split('@', 1)[1]}"
        return {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}


def load_settings(settings_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings from the environment, an optional file and explicit overrides.

    Raises SettingsError with every problem, one per line, instead of a pydantic traceback.
    """
    previous = os.environ.get(SETTINGS_FILE_ENV)
    if settings_file is not None:
        path = Path(settings_file)
        if not path.is_file():
            raise SettingsError(f"{path}: settings file not found")
        os.environ[SETTINGS_FILE_ENV] = str(path)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        file = os.environ.get(SETTINGS_FILE_ENV)
        where = f"environment or {file}" if file else "environment"
        problems = []
        for error in exc.errors(include_url=False):
            field = ".".join(str(p) for p in error["loc"])
            env = f"CANARY_{field.upper()}"
            msg = str(error["msg"]).removeprefix("Value error, ")
            if not field:  # a rule across fields: the message names them
                problems.append(f"settings (from {where}): {msg}")
                continue
            problems.append(f"settings: {field} ({env}, from {where}): {msg}")
        raise SettingsError("\n".join(problems)) from None
    finally:
        if settings_file is not None:
            if previous is None:
                os.environ.pop(SETTINGS_FILE_ENV, None)
            else:
                os.environ[SETTINGS_FILE_ENV] = previous
