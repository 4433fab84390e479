"""Reading the groups out of prediction request bodies."""

from __future__ import annotations

import json

import pytest

from canary.sim.payload import (
    DEFAULT_GROUP,
    MAX_RECORDS,
    BadRequestError,
    groups_from_body,
)


def body(data: object) -> bytes:
    return json.dumps(data).encode()


def test_simple_body_is_one_prediction() -> None:
    assert groups_from_body(body({"group": "b", "income": 3})) == ["b"]


def test_dataframe_records_give_one_prediction_per_record() -> None:
    records = [{"group": "a", "x": 1}, {"x": 2}, {"group": "c"}]
    assert groups_from_body(body({"dataframe_records": records})) == ["a", DEFAULT_GROUP, "c"]


def test_dataframe_split_reads_the_group_column() -> None:
    split = {"columns": ["x", "group"], "data": [[1, "a"], [2, "b"]]}
    assert groups_from_body(body({"dataframe_split": split})) == ["a", "b"]
    no_group = {"columns": ["x"], "data": [[1], [2], [3]]}
    assert groups_from_body(body({"dataframe_split": no_group})) == [DEFAULT_GROUP] * 3


def test_instances_are_records_too() -> None:
    assert groups_from_body(body({"instances": [{"group": "a"}, {"group": "a"}]})) == ["a", "a"]


def test_body_without_group_uses_the_default_group() -> None:
    assert groups_from_body(body({"income": 3})) == [DEFAULT_GROUP]


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (body([1, 2]), "JSON object"),
        (body({"group": 'a"} or vector(1) #'}), "invalid group"),
        (body({"group": ""}), "invalid group"),
        (body({"group": 3}), "invalid group"),
        (body({"group": "x" * 129}), "invalid group"),
        (body({"dataframe_records": {"group": "a"}}), "list of objects"),
        (body({"dataframe_records": [1]}), "list of objects"),
        (body({"dataframe_records": []}), "no records"),
        (body({"dataframe_split": []}), "must be an object"),
        (body({"dataframe_split": {"columns": ["group"]}}), "'columns' and 'data'"),
        (body({"dataframe_split": {"columns": ["group"], "data": [["a", 1]]}}), "one value"),
        (body({"instances": "a"}), "list of objects"),
        (body({"dataframe_records": [{"group": "a"}] * (MAX_RECORDS + 1)}), "more than"),
    ],
)
def test_bad_bodies_are_rejected_with_a_reason(raw: bytes, problem: str) -> None:
    with pytest.raises(BadRequestError, match=problem):
        groups_from_body(raw)
