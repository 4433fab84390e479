"""Which groups a prediction request is about, read from the JSON bodies clients send.

A served MLflow model takes ``{"dataframe_records": [...]}`` or ``{"dataframe_split":
{...}}``; the simulation also takes the simplest body a load generator can send,
``{"group": "a"}``. Group values become Prometheus label values, so each one is checked
against ``names.LABEL_VALUE`` here, at the edge, and a bad one is a 400, not a new series.
"""

from __future__ import annotations

import json
from typing import Any

from canary.core import names

DEFAULT_GROUP = "unknown"  # records without a group column
GROUP_FIELD = "group"
MAX_RECORDS = 10_000  # one request may not make the server draw millions of predictions


class BadRequestError(ValueError):
    """The body cannot be read as a prediction request; the message says why."""


def groups_from_body(body: bytes) -> list[str]:
    """The group of every record in the request, in order (one entry per prediction)."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequestError(f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequestError("body must be a JSON object")
    if "dataframe_records" in data:
        records = data["dataframe_records"]
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise BadRequestError("dataframe_records must be a list of objects")
        groups = [r.get(GROUP_FIELD, DEFAULT_GROUP) for r in records]
    elif "dataframe_split" in data:
        groups = _split_groups(data["dataframe_split"])
    elif "instances" in data:
        records = data["instances"]
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise BadRequestError("instances must be a list of objects")
        groups = [r.get(GROUP_FIELD, DEFAULT_GROUP) for r in records]
    else:
        groups = [data.get(GROUP_FIELD, DEFAULT_GROUP)]
    if not groups:
        raise BadRequestError("no records to predict")
    if len(groups) > MAX_RECORDS:
        raise BadRequestError(f"more than {MAX_RECORDS} records in one request")
    return [_checked_group(g) for g in groups]


def _split_groups(split: Any) -> list[Any]:
    if not isinstance(split, dict):
        raise BadRequestError("dataframe_split must be an object")
    columns, rows = split.get("columns"), split.get("data")
    if not isinstance(columns, list) or not isinstance(rows, list):
        raise BadRequestError("dataframe_split needs 'columns' and 'data' lists")
    if not all(isinstance(row, list) and len(row) == len(columns) for row in rows):
        raise BadRequestError("every dataframe_split row must have one value per column")
    if GROUP_FIELD not in columns:
        return [DEFAULT_GROUP] * len(rows)
    index = columns.index(GROUP_FIELD)
    return [row[index] for row in rows]


def _checked_group(value: Any) -> str:
    if not isinstance(value, str) or not names.LABEL_VALUE.fullmatch(value):
        raise BadRequestError(
            f"invalid group {value!r}: must be a string matching {names.LABEL_VALUE.pattern}"
        )
    return value
