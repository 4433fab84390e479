"""A strict parser for the PromQL selectors a policy may contain.

Policies name their series with plain instant-vector selectors such as
``model_requests_total{model="credit-risk", code=~"5.."}``. canary wraps them in its own
queries (adding the version and slice labels, ``increase`` and ``sum by``), so a selector
must be exactly a metric name and label matchers: no functions, no operators, no ranges.
Parsing them here, instead of only counting braces, means a stray quote or brace in a policy
can never change the shape of the query canary builds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_METRIC = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OP = re.compile(r"=~|!~|!=|=")
_WS = re.compile(r"\s*")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t"}


@dataclass(frozen=True)
class Matcher:
    """One label matcher: ``label op "value"``."""

    label: str
    op: str
    value: str

    def render(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.label}{self.op}"{escaped}"'


@dataclass(frozen=True)
class Selector:
    """A parsed instant-vector selector."""

    metric: str
    matchers: tuple[Matcher, ...] = ()

    def labels(self) -> set[str]:
        return {m.label for m in self.matchers}

    def render(self, extra: tuple[Matcher, ...] = ()) -> str:
        """The selector as PromQL, with ``extra`` matchers appended (already validated)."""
        matchers = (*self.matchers, *extra)
        if not matchers:
            return self.metric
        return self.metric + "{" + ", ".join(m.render() for m in matchers) + "}"


class SelectorError(ValueError):
    """A selector that is not a plain metric name with label matchers."""


def parse_selector(text: str) -> Selector:
    """Parse ``metric{label="value", ...}``; raise SelectorError saying where it went wrong."""
    if not isinstance(text, str):
        raise SelectorError('a selector must be a string like metric{label="value"}')
    pos = _WS.match(text, 0).end()  # type: ignore[union-attr]
    metric_match = _METRIC.match(text, pos)
    if metric_match is None:
        raise SelectorError(f"a selector must start with a metric name (at column {pos + 1})")
    metric = metric_match.group()
    pos = _WS.match(text, metric_match.end()).end()  # type: ignore[union-attr]
    matchers: list[Matcher] = []
    if pos < len(text) and text[pos] == "{":
        pos += 1
        while True:
            pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
            if pos < len(text) and text[pos] == "}":
                pos += 1
                break
            label_match = _LABEL.match(text, pos)
            if label_match is None:
                raise SelectorError(_where(text, pos, "expected a label name or '}'"))
            pos = _WS.match(text, label_match.end()).end()  # type: ignore[union-attr]
            op_match = _OP.match(text, pos)
            if op_match is None:
                raise SelectorError(_where(text, pos, "expected =, !=, =~ or !~"))
            pos = _WS.match(text, op_match.end()).end()  # type: ignore[union-attr]
            value, pos = _string(text, pos)
            if op_match.group() in ("=~", "!~"):
                _check_regex(value)
            matchers.append(Matcher(label_match.group(), op_match.group(), value))
            pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
            if pos < len(text) and text[pos] == ",":
                pos += 1
                continue
            if pos < len(text) and text[pos] == "}":
                pos += 1
                break
            raise SelectorError(_where(text, pos, "expected ',' or '}' (unbalanced braces?)"))
    pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
    if pos != len(text):
        raise SelectorError(
            _where(
                text,
                pos,
                "unexpected text after the selector; only metric{matchers} "
                "is allowed (no functions, operators or ranges)",
            )
        )
    return Selector(metric, tuple(matchers))


def _string(text: str, pos: int) -> tuple[str, int]:
    if pos >= len(text) or text[pos] != '"':
        raise SelectorError(_where(text, pos, "expected a double-quoted value"))
    pos += 1
    out: list[str] = []
    while pos < len(text):
        char = text[pos]
        if char == "\\":
            if pos + 1 >= len(text):
                break
            nxt = text[pos + 1]
            # Regex escapes such as \. are kept as written; PromQL strings allow them.
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            pos += 2
            continue
        if char == '"':
            return "".join(out), pos + 1
        if char == "\n":
            break
        out.append(char)
        pos += 1
    raise SelectorError(_where(text, pos, "unterminated string (unbalanced quotes)"))


def _check_regex(value: str) -> None:
    try:
        re.compile(value)
    except re.error as exc:
        raise SelectorError(f"invalid regular expression {value!r}: {exc}") from None


def _where(text: str, pos: int, message: str) -> str:
    return f"{message} at column {pos + 1} of {text!r}"
