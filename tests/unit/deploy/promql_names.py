"""Metric names used by a PromQL expression, without a PromQL parser.

Enough for the expressions in ``deploy/``: strings, label matchers, range and offset
durations and grouping label lists are removed first, then every identifier that is not
called like a function and is not a keyword is a metric name.
"""

from __future__ import annotations

import re

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "offset", "bool", "inf", "nan", "by", "without", "on", "ignoring"}
    | {"group_left", "group_right", "start", "end"}
)


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects, e.g. ``{"up"}`` for ``up{job="x"} == 0``."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub("", text)
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in _KEYWORDS}


_LABEL_VALUES = re.compile(r"label_values\(\s*([A-Za-z_:][\w:]*)\s*,")


def template_query_names(query: str) -> set[str]:
    """The metric a Grafana ``label_values(metric, label)`` variable query reads."""
    return set(_LABEL_VALUES.findall(query))
