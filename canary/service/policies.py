"""The policies in force, one per model, and reloads that never lose the last good set.

A reload (SIGHUP) reads every file again. If any file is invalid, or two files claim the
same model, the whole reload is refused and the previous set stays in force: a half-applied
set of policies would be harder to reason about than either the old or the new one.
Rollouts already running keep the policy they started with (it is pinned in the store), so a
reload changes how the next rollout goes, never the evidence of the current one.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path

from canary.core.policy import Policy
from canary.core.policy_loader import load_policy, policy_files
from canary.errors import PolicyError
from canary.log import get_logger

log = get_logger(__name__)


def policy_digest(policy: Policy) -> str:
    """A short stable fingerprint of a policy's content (shown with every rollout)."""
    text = json.dumps(policy.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class LoadedPolicy:
    policy: Policy
    path: Path
    digest: str


class PolicySet:
    """Policies by model name, loaded from a folder (or one file)."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self._lock = threading.Lock()
        self._by_model: dict[str, LoadedPolicy] = {}

    def load(self) -> None:
        """Load every policy; raise PolicyError listing every problem if any is invalid."""
        loaded = self._read()
        with self._lock:
            self._by_model = loaded
        log.info(
            "policy.loaded",
            source=str(self.source),
            models=sorted(loaded),
            digests={m: p.digest for m, p in loaded.items()},
        )

    def reload(self) -> list[str]:
        """Load again; on any problem keep the current set and return the problems."""
        try:
            self.load()
        except PolicyError as exc:
            for problem in exc.problems:
                log.error("policy.invalid", problem=problem)
            log.warning("policy.reload_rejected", kept=sorted(self._by_model))
            return list(exc.problems)
        return []

    def get(self, model: str) -> LoadedPolicy | None:
        with self._lock:
            return self._by_model.get(model)

    def all(self) -> list[LoadedPolicy]:
        with self._lock:
            return [self._by_model[m] for m in sorted(self._by_model)]

    def _read(self) -> dict[str, LoadedPolicy]:
        if not self.source.exists():
            raise PolicyError([f"{self.source}:0:0: no such file or folder"])
        files = policy_files([self.source])
        if not files:
            raise PolicyError([f"{self.source}:0:0: no policy files (*.yaml, *.yml)"])
        problems: list[str] = []
        loaded: dict[str, LoadedPolicy] = {}
        for path in files:
            try:
                policy = load_policy(path)
            except PolicyError as exc:
                problems.extend(exc.problems)
                continue
            if policy.model in loaded:
                other = loaded[policy.model].path
                problems.append(f"{path}:1:1: model: {policy.model!r} is already in {other}")
                continue
            loaded[policy.model] = LoadedPolicy(policy, path, policy_digest(policy))
        if problems:
            raise PolicyError(problems)
        return loaded
