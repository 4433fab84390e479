"""Choose how versions are served from the policy: a start command, or a static address."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from canary.core.policy import Serving
from canary.serving.base import ModelServing
from canary.serving.process import ProcessServing
from canary.serving.static import StaticServing


def make_serving(
    serving: Serving, workdir: Path, env: Mapping[str, str] | None = None
) -> ModelServing:
    """ProcessServing when ``serving.start`` is set (servers live under ``workdir``)."""
    if serving.start:
        return ProcessServing(serving, workdir, env=env)
    return StaticServing(serving)
