"""Live traffic for the demo: real applications from the held-out live set, with their truth.

The simulated load generator (``canary.sim.loadgen``) already sends at a steady rate with a
chosen mix of groups and keeps the counts; this subclass only changes what one request
carries (its ``_body``): the next live application of the group the generator drew, and
whether that applicant repaid (``canary.demo.payload``). The group mix is the live set's.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pandas as pd  # type: ignore[import-untyped]

from canary.demo.data import FEATURES, GROUP, LABEL
from canary.demo.payload import request_body
from canary.sim.loadgen import LoadGenerator


def live_rows(live: pd.DataFrame) -> dict[str, list[tuple[dict[str, Any], int]]]:
    """Per group, the (record, label) pairs of the live set, in order."""
    rows: dict[str, list[tuple[dict[str, Any], int]]] = {}
    records = live[list(FEATURES)].to_dict(orient="records")
    for record, group, label in zip(records, live[GROUP], live[LABEL], strict=True):
        clean = {k: (v.item() if hasattr(v, "item") else v) for k, v in record.items()}
        rows.setdefault(str(group), []).append((clean, int(label)))
    return rows


class LiveTraffic(LoadGenerator):
    """POSTs live applications to ``url`` at ``rps`` requests a second, ``batch`` in each,
    cycling through the live set."""

    def __init__(
        self,
        url: str,
        live: pd.DataFrame,
        *,
        rps: float | None,
        workers: int = 6,
        batch: int = 1,
        max_requests: int | None = None,
        seed: int | None = None,
    ) -> None:
        rows = live_rows(live)
        if not rows:
            raise ValueError("the live set is empty")
        shares = {group: float(len(items)) for group, items in rows.items()}
        super().__init__(
            url,
            rps=rps,
            groups=shares,
            workers=workers,
            batch=batch,
            max_requests=max_requests,
            seed=seed,
        )
        # next() on itertools.cycle is atomic under the GIL: workers may share them.
        self._cycles: dict[str, Iterator[tuple[dict[str, Any], int]]] = {
            group: itertools.cycle(items) for group, items in rows.items()
        }

    def _body(self, groups: list[str]) -> dict[str, Any]:
        rows = [(next(self._cycles[group]), group) for group in groups]
        return request_body([(record, group, label) for (record, label), group in rows])
