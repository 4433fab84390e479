"""`canary validate`, `canary schema` and `canary settings` through the real command line."""

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from canary.cli import main
from canary.core.yamlpos import load_located

ROOT = Path(__file__).resolve().parents[3]
POLICIES = ROOT / "config" / "policies"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed entry point, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "canary.cli", *args], capture_output=True, text=True, check=False
    )


def test_validate_accepts_every_example_policy():
    result = run("validate", str(POLICIES))
    assert result.returncode == 0, result.stdout + result.stderr
    files = sorted(POLICIES.glob("*.yaml"))
    assert len(files) >= 3
    for path in files:
        assert f"{path}: ok" in result.stdout
    assert f"{len(files)} policies valid" in result.stderr


def test_validate_reports_each_problem_of_each_file(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text((POLICIES / "credit-risk.yaml").read_text())
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        good.read_text()
        .replace("\nsteps:", "\nstpes:")
        .replace("  alpha: 0.05", "  alpha: [1]")
        .replace("interval: 15s", "interval: 15x")
    )
    broken = tmp_path / "broken.yml"
    broken.write_text("model: [unclosed\n")
    result = run("validate", str(good), str(bad), str(broken))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert f"{good}: ok" in lines[0]
    bad_lines = [line for line in lines if line.startswith(f"{bad}:")]
    assert len(bad_lines) == 4  # unknown key, missing steps, alpha type, interval
    assert any("did you mean `steps`?" in line for line in bad_lines)
    assert any(line.startswith(f"{broken}:2:1: YAML syntax error") for line in lines)
    assert "2 of 3 policies invalid" in result.stderr


def test_validate_of_a_missing_file_or_empty_folder_fails(tmp_path):
    assert run("validate", str(tmp_path / "nope.yaml")).returncode == 1
    empty = run("validate", str(tmp_path))
    assert empty.returncode == 1
    assert "no policy files" in empty.stderr


def test_schema_is_json_schema_that_accepts_the_examples_and_rejects_mistakes():
    result = CliRunner().invoke(main, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in sorted(POLICIES.glob("*.yaml")):
        document = load_located(path.read_text()).value
        errors = list(validator.iter_errors(document))
        assert errors == [], (path, [e.message for e in errors])
    document = load_located((POLICIES / "credit-risk.yaml").read_text()).value
    document["stpes"] = document.pop("steps")
    assert list(validator.iter_errors(document))
    document = load_located((POLICIES / "credit-risk.yaml").read_text()).value
    document["model"] = 'credit"}'
    assert list(validator.iter_errors(document))


def test_settings_never_print_secrets(monkeypatch):
    monkeypatch.setenv("CANARY_API_TOKEN", "s3cr3t-token-value")
    monkeypatch.setenv("CANARY_SLACK_WEBHOOK_URL", "https://hooks.example/T000/B000/XXXX")
    result = CliRunner().invoke(main, ["settings"])
    assert result.exit_code == 0, result.output
    assert "s3cr3t" not in result.output
    assert "hooks.example" not in result.output
    shown = json.loads(result.output)
    assert shown["api_token"] == "set"
    assert shown["slack_webhook_url"] == "set"


def test_settings_error_names_the_variable(monkeypatch):
    monkeypatch.setenv("CANARY_API_PORT", "eighty")
    result = CliRunner().invoke(main, ["settings"])
    assert result.exit_code == 1
    assert "api_port (CANARY_API_PORT" in result.output


@pytest.mark.parametrize("command", ["validate", "schema", "settings"])
def test_every_command_has_help(command):
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert len(result.output.splitlines()) > 3
