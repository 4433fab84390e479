"""The demo's printed timeline, as text."""

from __future__ import annotations

import io

from canary.demo.evaluation import evaluate
from canary.demo.timeline import (
    Timeline,
    breach_line,
    clip,
    headline,
    offline_summary,
    progress_line,
    transition_line,
)


def test_lines_carry_the_time_since_the_start():
    now = [10.0]
    out = io.StringIO()
    timeline = Timeline(out, clock=lambda: now[0])
    timeline.say("first")
    now[0] = 22.25
    timeline.say("second")
    timeline.detail("more")
    assert out.getvalue().splitlines() == [
        "[   0.0s] first",
        "[  12.2s] second",
        "          more",
    ]


def test_transition_line():
    point = {"phase": "progressing", "canary_weight": 25.0, "reason": "step 2 of 3 at 25%"}
    assert transition_line("2", point) == "v2 progressing    25%  step 2 of 3 at 25%"


def test_breach_line_names_metric_group_and_evidence():
    breach = {
        "metric": "accuracy",
        "slice": "b",
        "e_value": 340.2,
        "estimate": -0.17189,
        "interval": [-0.2896, None],
    }
    assert breach_line(breach) == (
        "breach: accuracy, group b: estimate -0.172, interval [-0.29, -], e-value 340"
    )
    unsliced = {
        "metric": "errors",
        "slice": None,
        "e_value": "inf",
        "estimate": 2.5,
        "interval": [1.2, 4.0],
    }
    assert breach_line(unsliced) == "breach: errors: estimate 2.5, interval [1.2, 4], e-value inf"


def test_progress_line_lists_what_still_lacks_its_minimum_sample():
    detail = {
        "version": "2",
        "canary_weight": 50.0,
        "canary_total": 4485.0,
        "e_value": 0.0576,
        "threshold": 20.0,
        "metrics": {
            "errors": {"enough": False, "progress": 0.77},
            "latency": {"enough": True, "progress": 1.0},
        },
    }
    assert progress_line(detail) == (
        "v2 at 50%: 4,485 canary requests, e-value 0.0576 (rollback at 20); "
        "minimum sample: errors 77%"
    )
    detail["metrics"]["errors"] = {"enough": True, "progress": 1.0}
    assert progress_line(detail).endswith("minimum sample reached")
    assert progress_line({"version": "2", "metrics": {}}) is None


def test_offline_summary_says_which_group_could_not_be_measured():
    labels = [1, 0] * 100 + [1] * 10
    predictions = [1, 0] * 100 + [0] * 10
    groups = ["a"] * 200 + ["b"] * 10
    text = offline_summary(evaluate(labels, predictions, groups))
    assert text == (
        "accuracy 0.952 (a 1.000), approval-rate gap 0.000 over 1 group; "
        "group b: 10 validation rows, too few to measure"
    )


def test_clip_and_headline():
    assert clip("a\nb", 10) == "a b"
    assert clip("x" * 20, 10) == "x" * 9 + "…"
    message = "Rolled back: credit-risk version 3 (champion: version 2). Reason: accuracy (b)."
    assert headline(message) == "Rolled back: credit-risk version 3 (champion: version 2)."
