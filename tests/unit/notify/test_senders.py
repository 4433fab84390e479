"""Slack and webhook notifiers over a swapped httpx transport: what is sent, how failures are
classified, and that the secret URL never leaks into an error."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from pydantic import SecretStr

from canary.notify.base import DeliveryError
from canary.notify.message import slack_payload, webhook_payload
from canary.notify.outbox import EnvChannels
from canary.notify.slack import SlackNotifier
from canary.notify.webhook import WebhookNotifier
from tests.unit.notify.samples import rollback

SECRET = "T0SECRET/B0SECRET/xoxbTOKENvalue"
SLACK_URL = f"https://hooks.slack.example/services/{SECRET}"
HOOK_URL = f"https://hooks.example/canary?token={SECRET}"


def transport(answer: httpx.Response | Exception, seen: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.MockTransport(handle)


def test_slack_posts_the_block_kit_payload() -> None:
    seen: list[httpx.Request] = []
    notifier = SlackNotifier(SLACK_URL, transport=transport(httpx.Response(200, text="ok"), seen))
    notifier.send(rollback())
    [request] = seen
    assert request.method == "POST"
    assert str(request.url) == SLACK_URL
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == slack_payload(rollback())


def test_webhook_posts_the_document_with_an_idempotency_key() -> None:
    seen: list[httpx.Request] = []
    notifier = WebhookNotifier(SecretStr(HOOK_URL), transport=transport(httpx.Response(204), seen))
    notifier.send(rollback())
    [request] = seen
    assert json.loads(request.content) == webhook_payload(rollback())
    assert request.headers["idempotency-key"] == "r-42/rolled_back/2/7"
    assert request.headers["x-canary-event"] == "rolled_back"


@pytest.mark.parametrize(
    ("response", "retryable", "retry_after"),
    [
        (httpx.Response(500, text="boom"), True, None),
        (httpx.Response(503, headers={"Retry-After": "7"}), True, 7.0),
        (httpx.Response(429, text="rate_limited", headers={"Retry-After": "30"}), True, 30.0),
        (httpx.Response(408), True, None),
        (httpx.Response(400, text="invalid_payload"), False, None),
        (httpx.Response(404, text="no_service"), False, None),
        (httpx.Response(410, text="channel_is_archived"), False, None),
        (httpx.Response(302, headers={"Location": "https://elsewhere/"}), False, None),
    ],
)
def test_failures_say_whether_retrying_can_help(
    response: httpx.Response, retryable: bool, retry_after: float | None
) -> None:
    notifier = SlackNotifier(SLACK_URL, transport=transport(response, []))
    with pytest.raises(DeliveryError) as caught:
        notifier.send(rollback())
    assert caught.value.retryable is retryable
    assert caught.value.retry_after == retry_after
    assert f"HTTP {response.status_code}" in str(caught.value)
    assert "hooks.slack.example" in str(caught.value)


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError(f"cannot connect to {SLACK_URL}"),
        httpx.ReadTimeout(f"timed out reading {SLACK_URL}"),
        httpx.RemoteProtocolError(f"bad reply from /services/{SECRET}"),
    ],
)
def test_transport_failures_never_carry_the_url(failure: Exception) -> None:
    notifier = SlackNotifier(SLACK_URL, transport=transport(failure, []))
    with pytest.raises(DeliveryError) as caught:
        notifier.send(rollback())
    error = caught.value
    assert error.retryable
    assert "SECRET" not in str(error)
    assert error.__cause__ is None
    assert error.__suppress_context__  # no chained httpx exception in a printed traceback
    assert type(failure).__name__ in str(error)


def test_a_body_that_echoes_the_url_is_scrubbed() -> None:
    echo = httpx.Response(500, text=f"no route for {SLACK_URL} (path /services/{SECRET})")
    notifier = SlackNotifier(SLACK_URL, transport=transport(echo, []))
    with pytest.raises(DeliveryError) as caught:
        notifier.send(rollback())
    assert "SECRET" not in str(caught.value)
    assert "no route for ***" in str(caught.value)


def test_the_url_is_not_in_reprs_or_validation_errors() -> None:
    assert "SECRET" not in repr(SlackNotifier(SLACK_URL))
    assert "SECRET" not in repr(WebhookNotifier(HOOK_URL))
    with pytest.raises(ValueError, match="must start with http") as caught:
        SlackNotifier(f"ftp://hooks.example/{SECRET}")
    assert "SECRET" not in str(caught.value)


def test_env_channels_read_the_url_from_the_environment() -> None:
    channels = EnvChannels(
        environ={"TEAM_HOOK": HOOK_URL},
        defaults={"CANARY_SLACK_WEBHOOK_URL": SecretStr(SLACK_URL)},
    )
    slack = channels("slack:CANARY_SLACK_WEBHOOK_URL")
    assert isinstance(slack, SlackNotifier)
    assert isinstance(channels("webhook:TEAM_HOOK"), WebhookNotifier)
    assert channels("slack:CANARY_SLACK_WEBHOOK_URL") is slack  # kept, with its connections
    assert channels("webhook:UNSET_VARIABLE") is None
    assert channels("pager:TEAM_HOOK") is None
    assert channels("webhook:lower_case") is None
    channels.close()


def test_httpx_request_logs_never_show_the_url(caplog: pytest.LogCaptureFixture) -> None:
    """httpx logs each request with its URL at INFO; the notifier's URL is redacted there."""
    caplog.set_level(logging.DEBUG)
    seen: list[httpx.Request] = []
    SlackNotifier(SLACK_URL, transport=transport(httpx.Response(200, text="ok"), seen)).send(
        rollback()
    )
    assert len(seen) == 1
    requests = [r for r in caplog.records if r.name == "httpx"]
    assert [r.getMessage() for r in requests] == ['HTTP Request: POST *** "HTTP/1.1 200 OK"']
    assert "SECRET" not in caplog.text
