"""A generic JSON webhook, and the one HTTP POST that every notifier shares.

Webhook URLs are secrets: Slack's carry their token in the path, and most others do too.
They are held as ``SecretStr``, never logged, and never put in exception messages. That is
also why httpx's exceptions are not chained onto ours (``from None``, against the usual
rule): some of them carry the request and its URL, and a traceback printed by a supervisor
would show it. Our message keeps what matters: the exception's kind, its text with the URL
scrubbed out, and the HTTP status and body the endpoint answered.

Each request carries ``Idempotency-Key: <dedupe key>``: delivery is at least once (a crash
after the endpoint answered but before the outbox recorded it sends again), so receivers that
care can drop the repeat.
"""

from __future__ import annotations

import logging
import math
import threading
from typing import Any

import httpx
from pydantic import SecretStr

from canary.log import get_logger
from canary.notify.base import DeliveryError, Notification
from canary.notify.message import webhook_payload

log = get_logger(__name__)

USER_AGENT = "canary-notifier/1"
_BODY_CHARS = 300


def check_url(url: str, what: str) -> httpx.URL:
    """Parse a webhook URL; ValueError that does not repeat it if it is not http(s)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise ValueError(f"{what}: the URL is not valid") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"{what}: the URL must start with http:// or https:// and name a host")
    return parsed


def _scrub(text: str, url: httpx.URL) -> str:
    """``text`` without the URL or the secret parts of it (path and query)."""
    secrets = [str(url), url.path if len(url.path) > 1 else "", url.query.decode()]
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


class _RedactSecretUrls(logging.Filter):
    """httpx logs every request with its full URL at INFO ("HTTP Request: POST https://...").
    This filter, on httpx's logger, rewrites any record that contains a registered secret URL
    (or its path) so that a process logging at INFO or DEBUG still never prints one."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def register(self, url: httpx.URL) -> None:
        with self._lock:
            self._secrets.update(s for s in (str(url), url.path if len(url.path) > 1 else "") if s)

    def filter(self, record: logging.LogRecord) -> bool:
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        message = record.getMessage()
        if any(secret in message for secret in secrets):
            for secret in secrets:
                message = message.replace(secret, "***")
            record.msg, record.args = message, ()
        return True


_REDACT = _RedactSecretUrls()
logging.getLogger("httpx").addFilter(_REDACT)


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from a numeric ``Retry-After`` header (the date form is rare; ignored)."""
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class JsonPoster:
    """POSTs JSON to one secret URL with a timeout, and turns every failure into a
    DeliveryError whose ``retryable`` says whether trying again may help."""

    def __init__(
        self,
        url: str | SecretStr,
        *,
        what: str,
        timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._url = url if isinstance(url, SecretStr) else SecretStr(url)
        self._parsed = check_url(self._url.get_secret_value(), what)
        _REDACT.register(self._parsed)
        self._what = what
        self._timeout = timeout
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            transport=transport,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
        )

    def __repr__(self) -> str:
        return f"JsonPoster({self._what}, host={self._parsed.host!r})"

    @property
    def host(self) -> str:
        """The endpoint's host name: safe to show, unlike the URL."""
        return str(self._parsed.host)

    def post(self, payload: Any, *, headers: dict[str, str] | None = None) -> httpx.Response:
        """POST ``payload`` as JSON; return a 2xx response or raise DeliveryError."""
        try:
            response = self._client.post(
                self._url.get_secret_value(), json=payload, headers=headers
            )
        except httpx.TimeoutException as exc:
            raise DeliveryError(
                f"{self._what}: no answer from {self.host} within {self._timeout:g}s "
                f"({type(exc).__name__})"
            ) from None
        except httpx.HTTPError as exc:
            detail = _scrub(str(exc), self._parsed) or "no detail"
            raise DeliveryError(
                f"{self._what}: cannot reach {self.host}: {type(exc).__name__}: {detail}"
            ) from None
        if response.is_success:
            return response
        status = response.status_code
        body = _scrub(" ".join(response.text[:_BODY_CHARS].split()), self._parsed)
        # 408, 429 and 5xx are the endpoint's trouble and may pass; any other answer (400 bad
        # payload, 403/404 revoked or mistyped webhook, 410 archived channel, a redirect) will
        # be the same next time.
        retryable = status in (408, 429) or status >= 500
        raise DeliveryError(
            f"{self._what}: {self.host} answered HTTP {status}: {body or '(empty body)'}",
            retryable=retryable,
            retry_after=_retry_after(response) if retryable else None,
        )

    def close(self) -> None:
        self._client.close()


class WebhookNotifier:
    """Sends the documented webhook JSON (message.py) to a URL read from the environment."""

    def __init__(
        self,
        url: str | SecretStr,
        *,
        timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._poster = JsonPoster(url, what="webhook", timeout=timeout, transport=transport)

    def __repr__(self) -> str:
        return f"WebhookNotifier(host={self._poster.host!r})"

    def send(self, notification: Notification) -> None:
        response = self._poster.post(
            webhook_payload(notification),
            headers={
                "Idempotency-Key": notification.dedupe_key,
                "X-Canary-Event": notification.event,
            },
        )
        log.debug(
            "notify.webhook_sent",
            host=self._poster.host,
            key=notification.dedupe_key,
            status=response.status_code,
        )

    def close(self) -> None:
        self._poster.close()
