import json

import structlog

from canary import log


def test_json_lines_when_not_a_terminal(capsys):
    log.configure("info", "json")
    log.get_logger("t").info("policy.invalid", file="p.yaml", line=3)
    record = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert record["event"] == "policy.invalid"
    assert record["file"] == "p.yaml"
    assert record["level"] == "info"
    assert "timestamp" in record


def test_secret_fields_are_redacted(capsys):
    log.configure("info", "json")
    log.get_logger().info("api.request", token="abc123", webhook_url="https://hooks/x")
    err = capsys.readouterr().err
    assert "abc123" not in err
    assert "hooks/x" not in err


def test_level_filters(capsys):
    log.configure("warning", "json")
    log.get_logger().info("quiet.event")
    log.get_logger().warning("loud.event")
    err = capsys.readouterr().err
    assert "quiet.event" not in err
    assert "loud.event" in err
    structlog.reset_defaults()
