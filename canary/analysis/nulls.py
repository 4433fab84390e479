"""From a policy's ``worse_when`` and ``tolerance`` to the null hypothesis each test checks.

Why one canonical form. Every ratio-like test is phrased on *adverse* counts (errors for
``worse_when: higher``; the complement, such as wrong predictions, for ``lower``) so that harm
always means "the canary's adverse rate q_C is too high". The null, "the canary is no worse than
tolerated", is then always linear: ``q_C <= c1 * q_B + c0``:

=====================  ====================  ===============================  ==============
worse_when             tolerance             null on adverse rates            test
=====================  ====================  ===============================  ==============
higher                 none                  q_C <= q_B                       count, r0 = 1
higher                 relative r            q_C <= (1 + r) q_B               count, r0 = 1+r
higher                 absolute a            q_C <= q_B + a                   contrast
lower                  none                  q_C <= q_B                       count, r0 = 1
lower                  relative r            p_C >= (1 - r) p_B               contrast
lower                  absolute a            q_C <= q_B + a                   contrast
=====================  ====================  ===============================  ==============

A pure ratio null (c0 = 0) gets the exact count test; a null with an additive part depends on
the unknown baseline rate in the count view, and gets the contrast (normal mixture) test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from canary.core.policy import Tolerance

# The regression a test must be able to catch, with the policy's power, before its metric
# counts as having seen enough data: "as large again as the tolerance, and at least 25% more
# adverse events than the baseline" (docs/statistics.md, "Minimum sample").
DETECT_RELATIVE = 0.25
DETECT_ABSOLUTE_FLOOR = 0.005


@dataclass(frozen=True)
class Null:
    """q_C <= c1 * q_B + c0 on adverse rates, and which test checks it."""

    c1: float
    c0: float
    complement: bool  # adverse = total - events (worse_when: lower)

    @property
    def test(self) -> Literal["count", "contrast"]:
        return "count" if self.c0 == 0 else "contrast"


def null_for(worse_when: Literal["higher", "lower"], tolerance: Tolerance | None) -> Null:
    """The canonical null of a ratio metric or a histogram bound."""
    rel = tolerance.relative if tolerance is not None else None
    absolute = tolerance.absolute if tolerance is not None else None
    complement = worse_when == "lower"
    if absolute is not None:
        return Null(c1=1.0, c0=float(absolute), complement=complement)
    if rel is None or rel == 0:
        return Null(c1=1.0, c0=0.0, complement=complement)
    if worse_when == "higher":
        return Null(c1=1.0 + rel, c0=0.0, complement=False)
    return Null(c1=max(1.0 - rel, 0.0), c0=float(rel), complement=True)


def count_design_effect(null: Null, tolerance: Tolerance | None) -> float:
    """Log rate ratio beyond r0 that the minimum sample is sized for."""
    rel = tolerance.relative if tolerance is not None and tolerance.relative else 0.0
    return math.log(1.0 + max(rel, DETECT_RELATIVE))


def contrast_design_effect(null: Null, baseline_adverse_rate: float) -> float:
    """Excess of the adverse rate (probability units) the minimum sample is sized for.

    The tolerance's own size in adverse-rate units (``c0 - (1 - c1) q_B``), or 25% of the
    baseline's adverse rate, whichever is larger, and never below half a percentage point.
    """
    margin = null.c0 - (1.0 - null.c1) * baseline_adverse_rate
    return max(margin, DETECT_RELATIVE * baseline_adverse_rate, DETECT_ABSOLUTE_FLOOR)
