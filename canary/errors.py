"""Every error canary raises on purpose, in one tree.

Third-party exceptions (httpx, MLflow, SQLAlchemy, yaml, subprocess) are translated at the
boundary of the backend that saw them, with ``raise ... from exc``, so callers handle one
family and the original cause stays in the traceback::

    CanaryError
    ├── PolicyError            a policy file is invalid (carries every problem found)
    ├── SettingsError          the service settings are invalid
    ├── ReplayError            a replay file is malformed (names the file and line)
    ├── AnalysisError          snapshots that cannot be analysed (counts going backwards)
    ├── BackendError           an external system failed; the caller may retry
    │   ├── RouterError        the proxy refused or could not be reached
    │   ├── RegistryError      MLflow failed or answered something unexpected
    │   ├── MetricsError       Prometheus failed or answered something unexpected
    │   ├── ServingError       a model server could not be started or never became healthy
    │   ├── NotifyError        a notification could not be delivered
    │   └── StoreError         the state database failed
    └── TransitionError        a rollout was asked to move to a phase it cannot reach
"""

from __future__ import annotations


class CanaryError(Exception):
    """Base of every error canary raises on purpose."""


class PolicyError(CanaryError):
    """A policy could not be loaded; ``problems`` lists every problem, one line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class SettingsError(CanaryError):
    """The service settings are invalid."""


class ReplayError(CanaryError):
    """A replay file is malformed; the message names the file and the line."""


class AnalysisError(CanaryError):
    """Snapshots that cannot be analysed, such as cumulative counts that go backwards."""


class BackendError(CanaryError):
    """An external system failed. The state before the call is intact; retrying is safe."""


class RouterError(BackendError):
    """The proxy refused a change or could not be reached."""


class RegistryError(BackendError):
    """The model registry failed or answered something unexpected."""


class MetricsError(BackendError):
    """The metrics backend failed or answered something unexpected."""


class ServingError(BackendError):
    """A model server could not be started or never became healthy."""


class NotifyError(BackendError):
    """A notification could not be delivered."""


class StoreError(BackendError):
    """The state database failed."""


class TransitionError(CanaryError):
    """A rollout was asked to move to a phase the transition table does not allow."""
