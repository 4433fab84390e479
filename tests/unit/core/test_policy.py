"""The policy schema: the examples are valid, and each kind of mistake is named precisely."""

from pathlib import Path

import pytest
import yaml

from canary.core.policy import (
    AliasTrigger,
    HAProxyRouter,
    HistogramMetric,
    NewVersionsTrigger,
    RatioMetric,
    TagTrigger,
    parse_policy,
)
from canary.errors import PolicyError

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = (ROOT / "config/policies/credit-risk.yaml").read_text()


def problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "p.yaml")
    return info.value.problems


def edit(path: list[str | int], value: object) -> str:
    """The example policy with one value replaced (or a key removed when value is ...)."""
    data = yaml.safe_load(EXAMPLE)
    data["notify"]["slack"]["events"] = list(data["notify"]["slack"]["events"])
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is ...:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return yaml.safe_dump(data, sort_keys=False)


def test_example_policy_is_fully_parsed():
    policy = parse_policy(EXAMPLE, "credit-risk.yaml")
    assert policy.model == "credit-risk"
    assert isinstance(policy.trigger, AliasTrigger)
    assert policy.trigger.alias == "challenger"
    assert isinstance(policy.router, HAProxyRouter)
    assert [s.weight for s in policy.steps] == [1, 5, 25, 50]
    assert policy.steps[0].min_requests == 500
    assert policy.steps[1].min_duration == 300
    assert policy.analysis.interval == 15
    assert policy.analysis.max_duration == 7200
    assert policy.analysis.on_no_data.after == 600
    kinds = [type(m) for m in policy.analysis.metrics]
    assert kinds == [RatioMetric, HistogramMetric, RatioMetric]
    assert policy.analysis.metrics[2].slice_by == "group"
    assert policy.analysis.fairness[0].min_ratio == 0.8
    assert policy.offline_gate["accuracy"].max_drop_vs_champion == 0.01
    assert policy.notify.slack is not None
    assert "rolled_back" in policy.notify.slack.events
    assert policy.all_analysis_names() == ["errors", "latency", "accuracy", "approval_parity"]


@pytest.mark.parametrize(
    ("trigger", "kind"),
    [
        ({"alias": "challenger"}, AliasTrigger),
        ({"tag": {"key": "ready", "value": "true"}}, TagTrigger),
        ({"new_versions": True}, NewVersionsTrigger),
    ],
)
def test_trigger_kinds(trigger, kind):
    assert isinstance(parse_policy(edit(["trigger"], trigger)).trigger, kind)


def test_misspelt_key_names_line_and_suggests():
    text = EXAMPLE.replace("\nsteps:", "\nstpes:")
    lines = problems(text)
    line_no = text.splitlines().index("stpes:") + 1
    assert f"p.yaml:{line_no}:1: stpes: unknown field `stpes`; did you mean `steps`?" in lines
    assert any("steps: required field is missing" in p for p in lines)


def test_misspelt_nested_key_suggests_the_field_at_that_place():
    text = EXAMPLE.replace("      worse_when: lower", "      worse_wen: lower")
    (line,) = [p for p in problems(text) if "worse_wen" in p]
    assert "analysis.metrics.2.worse_wen" in line
    assert "did you mean `worse_when`?" in line
    assert line.startswith(f"p.yaml:{text.splitlines().index('      worse_wen: lower') + 1}:")


def test_wrong_type_names_the_field_and_line():
    text = EXAMPLE.replace("  alpha: 0.05", "  alpha: lots")
    (line,) = problems(text)
    line_no = text.splitlines().index("  alpha: lots") + 1
    assert line.startswith(f"p.yaml:{line_no}:10: analysis.alpha: ")
    assert "valid number" in line


def test_bad_duration():
    text = EXAMPLE.replace("  interval: 15s", "  interval: 15 seconds")
    (line,) = problems(text)
    assert "analysis.interval: invalid duration '15 seconds'" in line
    assert line.startswith(f"p.yaml:{text.splitlines().index('  interval: 15 seconds') + 1}:")


def test_model_name_with_quote_and_brace_is_rejected_at_its_line():
    text = EXAMPLE.replace("model: credit-risk\n", 'model: "credit\\"}"\n', 1)
    (line,) = problems(text)
    assert line.startswith("p.yaml:3:8: model: invalid model name")
    assert "PromQL" in line


@pytest.mark.parametrize(
    ("path", "value", "fragment"),
    [
        (["router", "backend"], 'b"; rm -rf /', "invalid proxy name"),
        (["router", "type"], "haproxyy", "did you mean `haproxy`?"),
        (["router", "runtime_api"], "not a socket", "invalid runtime_api"),
        (["analysis", "metrics", 0, "events"], 'm{code=~"5.."', "unbalanced braces"),
        (["analysis", "metrics", 0, "events"], 'm{code="5}', "unterminated string"),
        (["analysis", "metrics", 0, "events"], "sum(m)", "only metric{matchers}"),
        (["analysis", "metrics", 0, "events"], 'm{version="2"}', "version label"),
        (["analysis", "metrics", 2, "slice_by"], "gr-oup", "invalid label name"),
        (["analysis", "metrics", 2, "slice_by"], "__name__", "invalid label name"),
        (
            ["analysis", "metrics", 0, "tolerance"],
            {"relative": 0.1, "absolute": 0.1},
            "exactly one",
        ),
        (["analysis", "metrics", 0, "kind"], "gauge", "expected one of ratio, histogram"),
        (["analysis", "metrics", 1, "buckets"], "latency_seconds", "_bucket"),
        (["analysis", "metrics", 1, "name"], "errors", "duplicate metric name"),
        (["analysis", "alpha"], 0.5, "less than or equal to 0.2"),
        (["steps"], [{"weight": 5}, {"weight": 1}], "must increase"),
        (["steps"], [{"weight": 0}], "greater than 0"),
        (["steps"], [{"weight": 120}], "less than or equal to 100"),
        (["steps"], [], "at least 1"),
        (["serving", "start"], ["serve", "{modle}"], "unknown placeholder {modle}"),
        (["serving", "health"], "ftp://{address}", "http"),
        (["trigger"], {"alias": "champion"}, "must differ"),
        (["trigger"], {"latest": True}, "a trigger is one of"),
        (["analysis", "fairness", 0, "min_ratio"], 1.5, "less than or equal to 1"),
        (["offline_gate", "accuracy"], {}, "at least one"),
        (["notify", "slack", "webhook_url_env"], "lower-case", "environment variable"),
        (["notify", "slack", "events"], ["rolledback"], "Input should be"),
    ],
)
def test_each_kind_of_mistake_is_named(path, value, fragment):
    found = problems(edit(path, value))
    assert any(fragment in p for p in found), found
    assert all(p.startswith("p.yaml:") for p in found)


def test_yaml_syntax_error_names_the_line():
    (line,) = problems("model: x\nsteps: [1, 2\nrouter: {}\n")
    assert line.startswith("p.yaml:3:")
    assert "YAML syntax error" in line


def test_duplicate_keys_are_errors():
    (line,) = problems(EXAMPLE + "model: other\n")
    assert "duplicate key 'model'" in line
    assert line.startswith(f"p.yaml:{len(EXAMPLE.splitlines()) + 1}:1:")


def test_policy_must_be_a_mapping():
    assert problems("- a\n- b\n") == ["p.yaml:1:1: a policy must be a YAML mapping of fields"]


def test_every_problem_is_reported_in_file_order():
    text = EXAMPLE.replace("  alpha: 0.05", "  alpha: x").replace("\nsteps:", "\nstpes:")
    lines = problems(text)
    numbers = [int(p.split(":")[1]) for p in lines]
    assert numbers == sorted(numbers)
    assert len(lines) >= 3


def test_policy_is_immutable():
    policy = parse_policy(EXAMPLE)
    with pytest.raises(ValueError, match="frozen"):
        policy.model = "other"  # type: ignore[misc]
