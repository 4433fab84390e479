"""Corrupted policies, generated from real ones, against the loader and ``canary validate``.

Why: a policy is hand-written YAML, and the loader is the one place that turns whatever a
person typed (or a tool templated) into the object every other layer trusts. For any input,
valid or broken, it must either return a Policy or raise ``PolicyError`` whose every problem
is one line ``file:line:column: ...`` pointing inside the file; ``canary validate`` must
print those lines and exit 1, never a traceback. The corruptions are the ones seen in
practice: wrong types, unknown and missing fields, bad durations and PromQL selectors,
hostile names, broken YAML, duplicate keys and bytes that are not UTF-8.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canary.cli import main
from canary.core.policy import Policy, policy_json_schema
from canary.core.policy_loader import load_policy, parse_policy
from canary.errors import PolicyError
from tests.unit.analysis.rollouts import FOUR_METRICS
from tests.unit.fuzz.hostile import HOSTILE

CONFIG = Path(__file__).resolve().parents[3] / "config" / "policies"
BASES: list[dict[str, Any]] = [yaml.safe_load(FOUR_METRICS)] + [
    yaml.safe_load(path.read_text()) for path in sorted(CONFIG.glob("*.yaml"))
]
SOURCE = "fuzzed.yaml"
PROBLEM = re.compile(r"^(?P<source>.+?):(?P<line>\d+):(?P<column>\d+): \S")
BOUNDED = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Fields whose values are names canary interpolates somewhere (PromQL, proxy, env, paths).
NAME_FIELDS: tuple[tuple[str | int, ...], ...] = (
    ("model",),
    ("champion_alias",),
    ("router", "backend"),
    ("analysis", "version_label"),
    ("analysis", "metrics", 0, "name"),
    ("analysis", "metrics", 1, "slice_by"),
    ("analysis", "fairness", 0, "slice_by"),
)
DURATIONS = ("interval", "min_duration", "max_duration", "after", "timeout", "ready_timeout")
BAD_DURATIONS = ("10x", "-5s", "1h30", "", "s", "1e999s", "nan", "5 m", "15ss", "∞", "0x10s")
BAD_SELECTORS = (
    "foo{",
    "sum(requests_total)",
    'requests_total{code="5"} or vector(1)',
    'requests_total{code=~"("}',
    "requests_total[5m]",
    '{code="5"}',
    "9metric",
    'requests_total{code="5",}}',
    'requests_total{code="a\nb"}',
    "requests_total offset 5m",
    "",
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=20),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
KNOWN_FIELDS = sorted(
    {
        name
        for definition in policy_json_schema().get("$defs", {}).values()
        for name in definition.get("properties", {})
    }
    | set(policy_json_schema()["properties"])
)


def _paths(value: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every path into a loaded YAML document (mappings and sequences), the root included."""
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out.extend(_paths(item, (*prefix, index)))
    return out


def _get(doc: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _set(doc: Any, path: tuple[str | int, ...], value: Any) -> None:
    _get(doc, path[:-1])[path[-1]] = value


@st.composite
def corrupted_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A real policy with one to three structural corruptions at drawn places."""
    doc: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        kind = draw(
            st.sampled_from(
                ["wrong_type", "unknown_field", "missing_field", "duration", "selector", "name"]
            )
        )
        if kind == "wrong_type":
            path = draw(st.sampled_from(paths[1:]))
            _set(doc, path, draw(VALUES))
        elif kind == "unknown_field":
            mappings = [p for p in paths if isinstance(_get(doc, p), dict)]
            path = draw(st.sampled_from(mappings))
            typo = draw(st.sampled_from(KNOWN_FIELDS)) + draw(st.sampled_from(["s", "_", "x"]))
            key = draw(st.one_of(st.just(typo), st.text(min_size=1, max_size=12)))
            _get(doc, path)[key] = draw(VALUES)
        elif kind == "missing_field":
            keyed = [p for p in paths[1:] if isinstance(p[-1], str)]
            path = draw(st.sampled_from(keyed))
            del _get(doc, path[:-1])[path[-1]]
        elif kind == "duration":
            found = [p for p in paths if p and p[-1] in DURATIONS]
            if found:
                _set(doc, draw(st.sampled_from(found)), draw(st.sampled_from(BAD_DURATIONS)))
        elif kind == "selector":
            found = [p for p in paths if p and p[-1] in ("events", "total", "buckets", "positives")]
            found = [p for p in found if isinstance(_get(doc, p), str)]
            if found:
                _set(doc, draw(st.sampled_from(found)), draw(st.sampled_from(BAD_SELECTORS)))
        else:
            found = [p for p in NAME_FIELDS if p in paths]
            if found:
                _set(doc, draw(st.sampled_from(found)), draw(st.sampled_from(HOSTILE)))
    return doc


def _dump(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


@st.composite
def broken_texts(draw: st.DrawFn) -> str:
    """The YAML text of a real or corrupted policy, then broken as text."""
    text = _dump(draw(st.one_of(st.sampled_from(BASES), corrupted_documents())))
    lines = text.splitlines(keepends=True)
    kind = draw(st.sampled_from(["insert", "truncate", "duplicate", "indent", "random"]))
    if kind == "insert":
        at = draw(st.integers(0, len(text)))
        junk = draw(
            st.sampled_from(
                [
                    ":",
                    "{",
                    "[",
                    '"',
                    "'",
                    "\t",
                    "&a",
                    "*a",
                    "!!python/object ",
                    "%YAML",
                    "<<: *x\n",
                    "- ",
                    "? ",
                    "\x00",
                    "\ufeff",
                    "\x85",
                ]
            )
        )
        return text[:at] + junk + text[at:]
    if kind == "truncate":
        return text[: draw(st.integers(0, len(text)))]
    if kind == "duplicate":
        index = draw(st.integers(0, len(lines) - 1))
        return "".join([*lines[: index + 1], lines[index], *lines[index + 1 :]])
    if kind == "indent":
        index = draw(st.integers(0, len(lines) - 1))
        lines[index] = draw(st.sampled_from(["  ", " ", "\t"])) + lines[index]
        return "".join(lines)
    return draw(st.text(st.characters(exclude_categories=["Cs"]), max_size=200))


def _assert_clear(problems: list[str], text: str, source: str = SOURCE) -> None:
    """Every problem is one line, names the source and a line inside the text."""
    assert problems, "a PolicyError must list at least one problem"
    last_line = max(1, len(text.splitlines()) + 1)
    for problem in problems:
        assert not any(c in problem for c in "\n\r"), repr(problem)
        match = PROBLEM.match(problem)
        assert match is not None, repr(problem)
        assert match["source"] == source, repr(problem)
        assert 1 <= int(match["line"]) <= last_line, (problem, last_line)
        assert "Traceback" not in problem


@pytest.mark.parametrize("char", ["\x08", "\x1b", "\x7f", "\ufffe", "\x00"])
def test_a_character_yaml_forbids_is_named_with_its_line(char: str) -> None:
    """Found by the property below: PyYAML's reader error was printed as several lines at
    1:1; it is one line naming the character and where it is."""
    text = f"model: credit-risk\ntrigger: {{alias: challenger}}\nserving: {{address: a{char}b}}\n"
    answer = _load(text)
    assert isinstance(answer, list)
    _assert_clear(answer, text)
    (problem,) = answer
    assert problem.startswith(f"{SOURCE}:3:"), problem
    assert repr(char) in problem, problem


def _load(text: str) -> Policy | list[str]:
    """The loader's answer: a Policy, or its problems. Any other exception fails the test."""
    try:
        return parse_policy(text, SOURCE)
    except PolicyError as exc:
        return exc.problems


@BOUNDED
@given(corrupted_documents())
def test_structural_corruptions_give_clear_errors(doc: dict[str, Any]) -> None:
    text = _dump(doc)
    answer = _load(text)
    if isinstance(answer, list):
        _assert_clear(answer, text)


@BOUNDED
@given(broken_texts())
def test_broken_yaml_gives_clear_errors(text: str) -> None:
    answer = _load(text)
    if isinstance(answer, list):
        _assert_clear(answer, text)


@pytest.mark.parametrize("path", [(), ("analysis", "metrics", 0)])
@pytest.mark.parametrize("hostile", HOSTILE)
def test_a_hostile_unknown_key_is_shown_escaped_on_one_line(
    path: tuple[str | int, ...], hostile: str
) -> None:
    """A key nobody knows, holding a newline, a NUL or a quote: refused as unknown, and the
    problem stays one line (an unescaped newline would forge a second problem line)."""
    base = BASES[0]
    doc = copy.deepcopy(base)
    key = f"x{hostile}"
    _get(doc, path)[key] = 1
    text = _dump(doc)
    answer = _load(text)
    assert isinstance(answer, list), f"unknown key {key!r} was accepted"
    _assert_clear(answer, text)
    assert any("unknown field" in problem for problem in answer), answer


@settings(BOUNDED, max_examples=60)
@given(st.sampled_from(BASES), st.sampled_from(NAME_FIELDS), st.sampled_from(HOSTILE))
def test_a_hostile_name_is_refused_and_named_escaped(
    base: dict[str, Any], path: tuple[str | int, ...], hostile: str
) -> None:
    """A name canary would interpolate is refused, and the problem shows it repr-escaped (so
    a newline or a NUL in it cannot forge a second line of output)."""
    doc = copy.deepcopy(base)
    if path not in _paths(doc):
        return
    _set(doc, path, hostile)
    text = _dump(doc)
    answer = _load(text)
    assert isinstance(answer, list), f"{hostile!r} at {path} was accepted"
    _assert_clear(answer, text)
    assert any(repr(hostile) in problem for problem in answer), (hostile, answer)


@settings(BOUNDED, max_examples=60)
@given(
    st.one_of(
        corrupted_documents().map(_dump),
        broken_texts(),
    ).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.data(),
)
def test_canary_validate_never_shows_a_traceback(
    tmp_path_factory: Any, raw: bytes, data: st.DataObject
) -> None:
    """``canary validate`` on the file: exit 0 or 1, one ``file:line:col:`` line per problem,
    a non-UTF-8 file refused as unreadable, never an exception escaping the command."""
    if data.draw(st.booleans(), label="non-UTF-8"):
        at = data.draw(st.integers(0, len(raw)), label="at")
        raw = (
            raw[:at]
            + data.draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80"]))
            + raw[at:]
        )
    folder = tmp_path_factory.mktemp("validate")
    path = folder / "policy.yaml"
    path.write_bytes(raw)
    result = CliRunner().invoke(main, ["validate", "--quiet", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code in (0, 1), (result.exit_code, result.output)
    assert "Traceback" not in result.output
    if result.exit_code == 1:
        lines = result.stdout.splitlines()
        assert lines, result.output
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            assert lines == [line for line in lines if line.startswith(f"{path}:0:0: cannot read")]
            return
        _assert_clear(lines, text, source=str(path))
    else:
        assert isinstance(load_policy(path), Policy)
