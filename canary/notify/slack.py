"""Slack through an incoming webhook: Block Kit messages built by message.py.

An incoming webhook answers ``200 ok``, or an error code in the body: ``400
invalid_payload`` (our bug: retrying cannot help), ``403 action_prohibited``, ``404
no_service`` (the webhook was revoked), ``410 channel_is_archived``, or ``429`` when rate
limited (with Retry-After). The URL is the credential, so it is handled as a secret end to
end (see webhook.py).
"""

from __future__ import annotations

import httpx
from pydantic import SecretStr

from canary.log import get_logger
from canary.notify.base import Notification
from canary.notify.message import slack_payload
from canary.notify.webhook import JsonPoster

log = get_logger(__name__)


class SlackNotifier:
    """Posts one Block Kit message per notification to a Slack incoming webhook."""

    def __init__(
        self,
        url: str | SecretStr,
        *,
        timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._poster = JsonPoster(url, what="slack", timeout=timeout, transport=transport)

    def __repr__(self) -> str:
        return f"SlackNotifier(host={self._poster.host!r})"

    def send(self, notification: Notification) -> None:
        response = self._poster.post(slack_payload(notification))
        log.debug(
            "notify.slack_sent",
            host=self._poster.host,
            key=notification.dedupe_key,
            status=response.status_code,
        )

    def close(self) -> None:
        self._poster.close()
