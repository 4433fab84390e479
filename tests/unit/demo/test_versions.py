"""The three trained versions behave as the demo says, on the live set it sends (seeded).

These are the claims the demo's outcome rests on, checked without any server: version 2
is no worse than version 1 for either group (it deserves promotion); version 3 is as good
for group a but clearly worse for group b and breaks the four-fifths rule on approvals
(it deserves a rollback naming group b); and yet version 3's own validation passes the
demo policy's offline gate.
"""

from __future__ import annotations

import numpy as np
import pytest

from canary.core.policy import Policy
from canary.demo.configs import demo_policy
from canary.demo.data import GROUP, LABEL, UNSEEN_EMPLOYMENT
from canary.demo.evaluation import Evaluation, evaluate
from canary.demo.models import predict, train
from canary.registry.gate import evaluate_gate
from tests.unit.demo.trained import Trained, train_all

HARM_MARGIN = 0.15  # version 3 is at least this much less accurate for group b


def on_live(trained: Trained, version: str) -> Evaluation:
    live = trained.data.live
    scorable = live[live["employment_type"] != UNSEEN_EMPLOYMENT]
    return evaluate(scorable[LABEL], predict(trained.models[version], scorable), scorable[GROUP])


def on_validation(trained: Trained, version: str) -> Evaluation:
    frame = trained.data.versions[version].validation
    return evaluate(frame[LABEL], predict(trained.models[version], frame), frame[GROUP])


def approval_ratio(evaluation: Evaluation) -> float:
    rates = evaluation.selection_rate
    return min(rates.values()) / max(rates.values())


def test_version_2_is_no_worse_than_version_1_for_either_group(trained):
    v1, v2 = on_live(trained, "1"), on_live(trained, "2")
    for group in ("a", "b"):
        assert v2.group_accuracy[group] >= v1.group_accuracy[group] - 0.01, group
    assert v2.accuracy > v1.accuracy  # more data helped
    assert approval_ratio(v2) >= 0.85  # comfortably inside the four-fifths rule


def test_version_3_harms_group_b_only(trained):
    v2, v3 = on_live(trained, "2"), on_live(trained, "3")
    assert v3.group_accuracy["b"] <= v2.group_accuracy["b"] - HARM_MARGIN
    assert v3.group_accuracy["a"] >= v2.group_accuracy["a"] - 0.02
    assert approval_ratio(v3) < 0.8  # it approves group b far less often
    assert v3.selection_rate["b"] < v3.selection_rate["a"]


@pytest.mark.parametrize("seed", [11])
def test_the_harm_does_not_hang_on_one_seed(seed):
    other = train_all(seed)
    v2, v3 = on_live(other, "2"), on_live(other, "3")
    assert v3.group_accuracy["b"] <= v2.group_accuracy["b"] - HARM_MARGIN
    assert v3.group_accuracy["a"] >= v2.group_accuracy["a"] - 0.03


def gate_rules():
    policy = Policy.model_validate(
        demo_policy(
            model="credit-risk",
            python="python",
            runtime_port=9999,
            first_port=18000,
            last_port=18003,
        )
    )
    return policy.offline_gate


def test_version_3_passes_the_offline_gate_on_its_own_validation(trained):
    v2 = on_validation(trained, "2").mlflow_metrics()
    v3_eval = on_validation(trained, "3")
    result = evaluate_gate(gate_rules(), v3_eval.mlflow_metrics(), v2)
    assert result.passed, result.reason
    assert v3_eval.unmeasured == ["b"]  # ...because group b is too small to measure there


def test_version_2_passes_the_offline_gate_against_version_1(trained):
    v1 = on_validation(trained, "1").mlflow_metrics()
    result = evaluate_gate(gate_rules(), on_validation(trained, "2").mlflow_metrics(), v1)
    assert result.passed, result.reason


def test_measured_on_all_groups_version_3_would_fail_the_fairness_gate(trained):
    # The gate is not blind by design: with group b present, version 3's gap shows.
    v3_live = on_live(trained, "3").mlflow_metrics()
    result = evaluate_gate(gate_rules(), v3_live, on_validation(trained, "2").mlflow_metrics())
    assert not result.passed
    assert any(f.metric == "fairness_dp_difference" for f in result.failures)


def test_every_version_fails_on_an_unseen_employment_type_and_only_there(trained):
    live = trained.data.live
    unseen = live[live["employment_type"] == UNSEEN_EMPLOYMENT].head(5)
    seen = live[live["employment_type"] != UNSEEN_EMPLOYMENT].head(200)
    for model in trained.models.values():
        with pytest.raises(ValueError, match="never seen in training"):
            predict(model, unseen)
        assert set(np.unique(predict(model, seen))) <= {0, 1}


def test_training_is_deterministic(trained):
    again = train(trained.data.versions["1"].train, seed=1)
    live = trained.data.live.head(500)
    live = live[live["employment_type"] != UNSEEN_EMPLOYMENT]
    assert (predict(again, live) == predict(trained.models["1"], live)).all()
