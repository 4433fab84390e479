"""The payloads, field by field: what Slack shows and what webhook receivers parse."""

from __future__ import annotations

import json
import math

import pytest

from canary.core.policy import ALL_EVENTS
from canary.notify.base import Breach, DatasetRef, Notification, Provenance
from canary.notify.message import (
    EMOJI,
    SCHEMA_VERSION,
    describe_breach,
    format_e_value,
    format_value,
    slack_payload,
    summary,
    webhook_payload,
)
from tests.unit.notify.samples import ERRORS_B, plain, rollback

ROLLBACK_TEXT = (
    "errors (group b): canary 2.1% vs tolerance 1.5%, 95% interval [1.6%, 2.7%], e-value 41 ≥ 20"
)


def test_a_rollback_in_slack_block_kit() -> None:
    assert slack_payload(rollback()) == {
        "text": (
            "Rolled back: credit-risk version 7 (champion: version 6). "
            "Step 2, 5% of traffic on the canary. Reason: errors regressed in group b. "
            f"{ROLLBACK_TEXT}. "
            "Run ab12cd34, trained on dataset credit-2024 (digest 1a2b3c). Rollout r-42."
        ),
        "blocks": [
            {
                "type": "header",
                "text": {
                    "type": "plain_text",
                    "text": ":rotating_light: Rolled back: credit-risk version 7",
                    "emoji": True,
                },
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "*Model* credit-risk  ·  *Canary* version 7  ·  *Champion* version 6"
                    "\nStep 2, 5% of traffic on the canary",
                },
            },
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": "*Reason:* errors regressed in group b"},
            },
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"*Evidence*\n• {ROLLBACK_TEXT}"},
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "*Provenance:* Run ab12cd34, trained on dataset credit-2024 "
                    "(digest 1a2b3c)",
                },
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "<http://127.0.0.1:8181/rollouts/r-42|Rollout status page>",
                },
            },
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": "rollout `r-42`  ·  <!date^1714564800^{date_short_pretty} "
                        "{time}|2024-05-01T12:00:00Z>",
                    }
                ],
            },
        ],
    }


@pytest.mark.parametrize("event", ALL_EVENTS)
def test_every_event_has_its_emoji_header_and_a_text_fallback(event: str) -> None:
    payload = slack_payload(plain(event))
    header = payload["blocks"][0]
    assert header["type"] == "header"
    assert header["text"]["text"].startswith(EMOJI[event] + " ")
    assert header["text"]["text"].endswith("credit-risk version 7")
    assert payload["text"].endswith("Rollout r-42.")
    assert "credit-risk version 7" in payload["text"]
    assert payload["blocks"][-1]["type"] == "context"
    assert "r-42" in payload["blocks"][-1]["elements"][0]["text"]
    assert len(set(EMOJI.values())) == len(ALL_EVENTS)  # one emoji per event, none shared


def test_a_version_with_no_champion_and_no_traffic() -> None:
    payload = slack_payload(plain("rejected", champion_version=None, step=0, weight=0.0))
    assert payload["blocks"][1]["text"]["text"] == (
        "*Model* credit-risk  ·  *Canary* version 7  ·  no champion"
    )
    assert payload["text"].startswith(
        "Rejected: credit-risk version 7. Reason: errors regressed in group b. Rollout r-42."
    )


def test_outside_text_cannot_make_links_or_mentions_in_slack() -> None:
    n = rollback(
        reason="see <https://evil.example|the fix> & <!channel>",
        provenance=Provenance(datasets=(DatasetRef("<!here>", "x>y"),)),
    )
    payload = slack_payload(n)
    dumped = json.dumps(payload)
    assert "<!channel>" not in dumped
    assert "<!here>" not in dumped
    assert "<https://evil" not in dumped
    assert payload["blocks"][2]["text"]["text"] == (
        "*Reason:* see &lt;https://evil.example|the fix&gt; &amp; &lt;!channel&gt;"
    )
    assert "&lt;!channel&gt;" in payload["text"]


def test_long_titles_stay_within_slacks_header_limit() -> None:
    n = plain("promoted", model="m" + "x" * 127)
    header = slack_payload(n)["blocks"][0]["text"]["text"]
    assert len(header) == 150
    assert header.endswith("…")


def test_the_webhook_document() -> None:
    assert webhook_payload(rollback()) == {
        "schema_version": SCHEMA_VERSION,
        "source": "canary",
        "event": "rolled_back",
        "dedupe_key": "r-42/rolled_back/2/7",
        "rollout_id": "r-42",
        "model": "credit-risk",
        "version": "7",
        "champion_version": "6",
        "step": 2,
        "canary_weight": 5.0,
        "reason": "errors regressed in group b",
        "time": "2024-05-01T12:00:00Z",
        "timestamp": 1714564800.0,
        "summary": summary(rollback()),
        "breaches": [
            {
                "metric": "errors",
                "slice_by": "group",
                "slice": "b",
                "estimate": 0.021,
                "interval": [0.016, 0.027],
                "confidence": 0.95,
                "baseline": None,
                "limit": 0.015,
                "unit": "fraction",
                "e_value": 41.3,
                "threshold": 20.0,
                "description": ROLLBACK_TEXT,
            }
        ],
        "provenance": {
            "run_id": "ab12cd34",
            "datasets": [{"name": "credit-2024", "digest": "1a2b3c", "context": "training"}],
        },
        "status_url": "http://127.0.0.1:8181/rollouts/r-42",
    }
    assert SCHEMA_VERSION == 1


def test_the_webhook_document_is_strict_json_even_with_infinite_evidence() -> None:
    n = rollback(breaches=(Breach("errors", math.inf, 0.5, (0.4, 0.6)),))
    document = json.loads(json.dumps(webhook_payload(n), allow_nan=False))
    assert document["breaches"][0]["e_value"] == "inf"
    assert "e-value ∞" in document["breaches"][0]["description"]


def test_an_unbounded_interval_is_shown_and_sent_as_infinite() -> None:
    """A rate ratio over a champion with no errors yet has no upper bound: the rollback
    message must still go out, and name it."""
    breach = Breach("errors", 40.0, math.inf, (3.5, math.inf), unit="number")
    n = rollback(breaches=(breach,))
    assert "interval [3.5, ∞]" in describe_breach(breach)
    document = json.loads(json.dumps(webhook_payload(n), allow_nan=False))
    assert document["breaches"][0]["estimate"] == "inf"
    assert document["breaches"][0]["interval"] == [3.5, "inf"]
    stored = json.loads(json.dumps(n.to_dict(), allow_nan=False))  # as the outbox keeps it
    assert Notification.from_dict(stored).breaches[0].interval == (3.5, math.inf)


def test_an_announcement_without_evidence_has_empty_lists_and_nulls() -> None:
    document = webhook_payload(plain("started", champion_version=None))
    assert document["breaches"] == []
    assert document["provenance"] is None
    assert document["status_url"] is None
    assert document["champion_version"] is None


@pytest.mark.parametrize(
    ("breach", "text"),
    [
        (ERRORS_B, ROLLBACK_TEXT),
        (
            Breach("errors", 25, 0.021, (0.016, 0.027), baseline=0.01, limit=0.011),
            "errors: canary 2.1% vs baseline 1.0% (tolerance 1.1%), interval [1.6%, 2.7%], "
            "e-value 25",
        ),
        (
            Breach("accuracy", 3.25, 0.81, (0.78, 0.84), slice="a", baseline=0.9, confidence=0.9),
            "accuracy (a): canary 81.0% vs baseline 90.0%, 90% interval [78.0%, 84.0%], "
            "e-value 3.2",
        ),
        (
            Breach("latency", 2.5e7, 0.412, (0.39, 1.5), unit="seconds", threshold=20),
            "latency: canary 412 ms, interval [390 ms, 1.50 s], e-value 2.5e+07 ≥ 20",
        ),
        (
            Breach(
                "approval_parity",
                21,
                0.72,
                (0.61, 0.79),
                "b",
                "group",
                limit=0.8,
                unit="number",
                threshold=20,
            ),
            "approval_parity (group b): canary 0.72 vs tolerance 0.8, interval [0.61, 0.79], "
            "e-value 21 ≥ 20",
        ),
    ],
)
def test_breaches_in_words(breach: Breach, text: str) -> None:
    assert describe_breach(breach) == text


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (0.021, "fraction", "2.1%"),
        (0.5, "fraction", "50.0%"),
        (0.00042, "fraction", "0.042%"),
        (0.0, "fraction", "0%"),
        (0.0042, "seconds", "4.2 ms"),
        (0.25, "seconds", "250 ms"),
        (3.0, "seconds", "3.00 s"),
        (1234.5, "number", "1.23e+03"),
    ],
)
def test_values_in_their_units(value: float, unit: str, text: str) -> None:
    assert format_value(value, unit) == text


@pytest.mark.parametrize(
    ("value", "text"), [(41.3, "41"), (3.25, "3.2"), (0.5, "0.5"), (math.inf, "∞")]
)
def test_e_values_at_a_glance(value: float, text: str) -> None:
    assert format_e_value(value) == text
