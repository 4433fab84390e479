"""The README tells the truth: its policy reference and example match the code."""

from pathlib import Path

from canary.core.policy import parse_policy
from canary.core.policy_reference import markdown, rows

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_policy_reference_matches_the_schema():
    start = README.index("<!-- policy-reference:start -->\n") + len(
        "<!-- policy-reference:start -->\n"
    )
    end = README.index("<!-- policy-reference:end -->")
    assert README[start:end] == markdown(), "run: canary schema --markdown, paste into README"


def test_every_field_has_a_meaning():
    missing = [row.path for row in rows() if not row.meaning.strip()]
    assert missing == []


def test_reference_lists_every_field_of_the_example():
    paths = {row.path for row in rows()}
    for expected in [
        "trigger.alias",
        "router.runtime_api",
        "steps[].min_requests",
        "analysis.on_query_error.consecutive_limit",
        "analysis.metrics[].slice_by",
        "analysis.fairness[].min_ratio",
        "offline_gate.<metric>.max_drop_vs_champion",
        "notify.slack.webhook_url_env",
    ]:
        assert expected in paths


def test_example_policy_in_readme_is_the_example_file_and_valid():
    policy_file = (ROOT / "config/policies/credit-risk.yaml").read_text()
    body = "\n".join(policy_file.splitlines()[2:])  # without the two comment lines
    assert body in README
    block = README.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert parse_policy(block).model == "credit-risk"


def test_readme_gives_the_two_setup_commands_that_exist():
    for command in ("bash scripts/demo.sh", "bash scripts/test.sh"):
        assert f"\n{command}\n" in README
        assert (ROOT / command.split()[1]).is_file()
    ci = (ROOT / ".ci/run").read_text()
    assert 'TEST_COMMAND="bash scripts/test.sh"' in ci
