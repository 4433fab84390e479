"""The demo's request body: application rows, their group, and the truth that arrives later.

A request is what ``mlflow models serve`` takes (``{"dataframe_records": [...]}``) plus one
field of ours, ``labels``: for each record, whether that applicant repaid (0/1, or null when
the truth will never be known). In production the truth comes days later from another
system; here the load generator knows it (the live set is labelled), sends it along, and the
scoring server holds it back for the label delay before counting the prediction right or
wrong. The group travels in each record (``group``) for monitoring and is removed before
the model sees the row.

Groups are read and checked by ``canary.sim.payload`` (the same rules as the simulated
server: a group becomes a Prometheus label value), so both servers accept the same bodies.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from canary.sim.payload import GROUP_FIELD, BadRequestError, groups_from_body

LABELS_FIELD = "labels"


@dataclass(frozen=True)
class ScoringRequest:
    """One request: the rows to score (without their group), their groups and labels."""

    records: list[dict[str, Any]]
    groups: list[str]
    labels: list[int | None]


def parse_request(body: bytes) -> ScoringRequest:
    """Read a body; BadRequestError (an HTTP 400) saying why when it is not one we take."""
    groups = groups_from_body(body)  # validates JSON, the record shape and every group
    data = json.loads(body)
    records = data.get("dataframe_records")
    if not isinstance(records, list):
        raise BadRequestError("the scoring server takes {'dataframe_records': [...]}")
    labels = data.get(LABELS_FIELD)
    if labels is None:
        labels = [None] * len(records)
    if not isinstance(labels, list) or len(labels) != len(records):
        raise BadRequestError(f"{LABELS_FIELD} must be a list with one entry per record")
    for label in labels:
        # bool is an int in Python; a label of true is a client bug, not a 1
        if label is not None and (type(label) is not int or label not in (0, 1)):
            raise BadRequestError(f"a label must be 0, 1 or null, not {json.dumps(label)}")
    rows = [{k: v for k, v in record.items() if k != GROUP_FIELD} for record in records]
    return ScoringRequest(rows, groups, list(labels))


def request_body(
    applications: Sequence[tuple[Mapping[str, Any], str, int | None]],
) -> dict[str, Any]:
    """The body that scores these (record, group, label) applications in one request."""
    return {
        "dataframe_records": [{**record, GROUP_FIELD: group} for record, group, _ in applications],
        LABELS_FIELD: [label for _, _, label in applications],
    }
