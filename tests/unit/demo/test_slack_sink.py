"""The Slack stand-in keeps each message's text, answering like Slack."""

from __future__ import annotations

import httpx

from canary.demo.slack_sink import SlackSink
from tests.harness.proc import free_port


def test_it_keeps_messages_and_answers_ok():
    heard: list[str] = []
    sink = SlackSink(free_port(), on_message=heard.append).start()
    try:
        ok = httpx.post(sink.url, json={"text": "Promoted: credit-risk version 2.", "blocks": []})
        assert (ok.status_code, ok.text) == (200, "ok")
        bad = httpx.post(
            sink.url, content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert bad.status_code == 400
        elsewhere = httpx.post(sink.url.replace("/slack", "/other"), json={"text": "x"})
        assert elsewhere.status_code == 404
    finally:
        sink.stop()
    assert sink.messages() == ["Promoted: credit-risk version 2."]
    assert heard == ["Promoted: credit-risk version 2."]
