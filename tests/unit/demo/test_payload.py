"""The demo's request body: records, their groups and their late labels."""

from __future__ import annotations

import json

import pytest

from canary.demo.payload import parse_request, request_body
from canary.sim.payload import BadRequestError


def body(data: object) -> bytes:
    return json.dumps(data).encode()


def test_round_trip_removes_the_group_from_the_model_input():
    sent = request_body(
        [({"income": 40.0, "rent_on_time": 0.9}, "b", 1), ({"income": 9}, "a", None)]
    )
    request = parse_request(body(sent))
    assert request.records == [{"income": 40.0, "rent_on_time": 0.9}, {"income": 9}]
    assert request.groups == ["b", "a"]
    assert request.labels == [1, None]


def test_labels_are_optional():
    request = parse_request(body({"dataframe_records": [{"group": "a", "x": 1}]}))
    assert request.labels == [None]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"dataframe_records": [{"group": "a"}], "labels": [True]}, "0, 1 or null"),
        ({"dataframe_records": [{"group": "a"}], "labels": [2]}, "0, 1 or null"),
        ({"dataframe_records": [{"group": "a"}], "labels": ["1"]}, "0, 1 or null"),
        ({"dataframe_records": [{"group": "a"}], "labels": [1, 0]}, "one entry per record"),
        ({"dataframe_records": [{"group": "a"}], "labels": 1}, "one entry per record"),
        ({"group": "a"}, "dataframe_records"),
        ({"dataframe_records": [{"group": 'a"} or {'}]}, "invalid group"),
    ],
)
def test_bad_bodies_are_refused_with_the_reason(data, message):
    with pytest.raises(BadRequestError, match=message):
        parse_request(body(data))


def test_not_json_is_refused():
    with pytest.raises(BadRequestError, match="not JSON"):
        parse_request(b"{nope")
