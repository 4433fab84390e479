"""The synthetic applications have the shape the demo's story needs (pure, seeded)."""

from __future__ import annotations

import numpy as np
import pytest

from canary.demo.data import (
    EMPLOYMENT_TYPES,
    FEATURES,
    GROUP,
    LABEL,
    UNSEEN_EMPLOYMENT,
    V3_SHARE_B,
    Population,
    applications,
    demo_data,
    split,
)
from canary.demo.evaluation import MIN_GROUP_ROWS


def test_the_same_seed_gives_the_same_applications():
    first = applications(500, Population(), np.random.default_rng(3))
    again = applications(500, Population(), np.random.default_rng(3))
    other = applications(500, Population(), np.random.default_rng(4))
    assert first.equals(again)
    assert not first.equals(other)


def test_columns_groups_and_labels():
    frame = applications(20_000, Population(share_b=0.4), np.random.default_rng(1))
    assert list(frame.columns) == [GROUP, *FEATURES, LABEL]
    assert set(frame[GROUP]) == {"a", "b"}
    assert (frame[GROUP] == "b").mean() == pytest.approx(0.4, abs=0.02)
    assert set(frame[LABEL]) == {0, 1}
    assert set(frame["employment_type"]) == set(EMPLOYMENT_TYPES)


def test_both_groups_repay_at_about_the_same_rate():
    # Equal base rates: a model that learned both groups can pass the four-fifths rule.
    frame = applications(40_000, Population(), np.random.default_rng(2))
    rates = frame.groupby(GROUP)[LABEL].mean()
    assert abs(rates["a"] - rates["b"]) < 0.03


def test_group_b_has_thin_credit_files():
    frame = applications(20_000, Population(), np.random.default_rng(5))
    history = frame.groupby(GROUP)["credit_history_years"].mean()
    assert history["b"] < history["a"] / 3


def test_unseen_employment_only_where_asked():
    plain = applications(10_000, Population(), np.random.default_rng(6))
    live = applications(10_000, Population(unseen_employment=0.04), np.random.default_rng(6))
    assert UNSEEN_EMPLOYMENT not in set(plain["employment_type"])
    assert (live["employment_type"] == UNSEEN_EMPLOYMENT).mean() == pytest.approx(0.04, abs=0.01)


def test_population_shares_are_checked():
    with pytest.raises(ValueError, match="share_b"):
        Population(share_b=1.5)
    with pytest.raises(ValueError, match="n must be"):
        applications(0, Population(), np.random.default_rng(0))


def test_split_keeps_every_row_once():
    frame = applications(1_000, Population(), np.random.default_rng(8))
    train, validation = split(frame, 0.2, np.random.default_rng(9))
    assert (len(train), len(validation)) == (800, 200)
    both = sorted(train["income"].tolist() + validation["income"].tolist())
    assert both == sorted(frame["income"].tolist())


def test_version_3_data_lost_almost_all_of_group_b():
    data = demo_data()
    v2, v3 = data.versions["2"], data.versions["3"]
    assert (v2.train[GROUP] == "b").mean() == pytest.approx(0.4, abs=0.02)
    assert (v3.train[GROUP] == "b").mean() < 2 * V3_SHARE_B
    # ...so few in its validation split that its per-group numbers cannot be measured
    assert (v3.validation[GROUP] == "b").sum() < MIN_GROUP_ROWS
    assert (data.live[GROUP] == "b").mean() == pytest.approx(0.4, abs=0.02)
