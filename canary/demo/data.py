"""Synthetic credit applications: who applies, and who repays (pure, seeded).

Why synthetic, and why this shape. The demo must show a harm that only live traffic reveals,
so the data is built to contain one on purpose. Applicants belong to group ``a`` or ``b``
(the fairness slice; it is passed along with each request for monitoring, never a model
input). Group b has thin credit files: short credit histories that say little about
repayment, while paying the rent on time says a lot; for group a a long history is what
counts. A model that saw both groups learns both relations. A model retrained on a data set
that lost almost every group-b row (``version 3``) learns only group a's, approves fewer of
group b and is wrong about them more often, while its own validation split, drawn from the
same skewed data, looks as good as ever.

Live applications also carry, about once in 25, an employment type no training set ever
had (``gig``). Every version's encoder rejects it, so those requests fail with HTTP 500: a
small, real error rate for the error metric to compare between versions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd  # type: ignore[import-untyped]

GROUP = "group"
LABEL = "repaid"
NUMERIC_FEATURES: tuple[str, ...] = (
    "income",
    "debt_ratio",
    "credit_history_years",
    "late_payments",
    "rent_on_time",
)
CATEGORICAL_FEATURES: tuple[str, ...] = ("employment_type",)
FEATURES: tuple[str, ...] = NUMERIC_FEATURES + CATEGORICAL_FEATURES
GROUPS: tuple[str, ...] = ("a", "b")

EMPLOYMENT_TYPES: tuple[str, ...] = ("salaried", "self_employed", "retired")
EMPLOYMENT_SHARES: tuple[float, ...] = (0.6, 0.25, 0.15)
UNSEEN_EMPLOYMENT = "gig"  # appears in live traffic only

_SHARPNESS = 1.6  # scales the logit: higher means labels follow the features more closely


@dataclass(frozen=True)
class Population:
    """Who applies: the share of group b and of employment types never seen in training."""

    share_b: float = 0.4
    unseen_employment: float = 0.0

    def __post_init__(self) -> None:
        for what in ("share_b", "unseen_employment"):
            value = getattr(self, what)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{what} must be a share in [0, 1], got {value!r}")


def applications(n: int, population: Population, rng: np.random.Generator) -> pd.DataFrame:
    """``n`` applications with their features, their group and whether they repaid."""
    if n < 1:
        raise ValueError("n must be >= 1")
    is_b = rng.random(n) < population.share_b
    frame = pd.DataFrame(
        {
            GROUP: np.where(is_b, "b", "a"),
            # thousands a year
            "income": rng.lognormal(np.where(is_b, 3.75, 3.9), 0.35).round(1),
            "debt_ratio": rng.beta(2.0, 5.0, n).round(3),
            # thin files in group b: a couple of years of history instead of about ten
            "credit_history_years": np.where(
                is_b, rng.gamma(1.5, 1.2, n), rng.gamma(5.0, 2.0, n)
            ).round(1),
            "late_payments": rng.poisson(np.where(is_b, 0.6, 0.8)).astype(np.float64),
            "rent_on_time": rng.beta(6.0, 2.0, n).round(3),
            "employment_type": rng.choice(EMPLOYMENT_TYPES, size=n, p=EMPLOYMENT_SHARES),
        }
    )
    if population.unseen_employment > 0:
        unseen = rng.random(n) < population.unseen_employment
        frame.loc[unseen, "employment_type"] = UNSEEN_EMPLOYMENT
    probability = 1.0 / (1.0 + np.exp(-_SHARPNESS * repayment_logit(frame)))
    frame[LABEL] = (rng.random(n) < probability).astype(np.int64)
    return frame


def repayment_logit(frame: pd.DataFrame) -> np.ndarray:
    """The true relation between features and repayment, which differs by group.

    Per group, an intercept plus a weight on each standardised feature. Group b's intercept
    makes both groups repay at about the same rate, so a model that learned both passes the
    four-fifths rule on approvals.
    """
    is_b = (frame[GROUP] == "b").to_numpy()
    income = (np.log(frame["income"].to_numpy(dtype=float)) - 3.85) / 0.35
    debt = (frame["debt_ratio"].to_numpy(dtype=float) - 0.28) / 0.16
    history = frame["credit_history_years"].to_numpy(dtype=float)
    late = frame["late_payments"].to_numpy(dtype=float)
    rent = (frame["rent_on_time"].to_numpy(dtype=float) - 0.75) / 0.14
    kind = frame["employment_type"].to_numpy()
    employment = np.where(kind == "self_employed", -0.3, np.where(kind == "retired", 0.1, 0.0))
    group_a = 0.5 + 0.9 * income - 1.0 * debt + 0.8 * (history - 10.0) / 4.0
    group_a += -0.6 * (late - 0.8) + employment
    group_b = 1.0 + 0.7 * income - 1.0 * debt - 0.6 * (late - 0.6) + 1.5 * rent + employment
    result: np.ndarray = np.where(is_b, group_b, group_a)
    return result


@dataclass(frozen=True)
class TrainingSet:
    """What one version is trained and evaluated on: a data set split in two."""

    name: str  # the data set's name in MLflow
    description: str
    train: pd.DataFrame
    validation: pd.DataFrame


def split(
    frame: pd.DataFrame, validation_share: float, rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A random train / validation split of the rows."""
    order = rng.permutation(len(frame))
    cut = round(len(frame) * (1.0 - validation_share))
    train = frame.iloc[order[:cut]].reset_index(drop=True)
    validation = frame.iloc[order[cut:]].reset_index(drop=True)
    return train, validation


@dataclass(frozen=True)
class DemoData:
    """The training sets of versions 1-3 and the live applications the load generator sends."""

    versions: dict[str, TrainingSet]
    live: pd.DataFrame


# Sizes of the demo's data sets. Version 1 is trained on little data, version 2 on much
# more; version 3 on as much as version 2, from a data set that kept 0.3% group-b rows.
V1_ROWS = 1_250
V2_ROWS = 20_000
V3_ROWS = 20_000
V3_SHARE_B = 0.003
LIVE_ROWS = 40_000
LIVE_UNSEEN_EMPLOYMENT = 0.04
VALIDATION_SHARE = 0.2


def demo_data(seed: int = 7) -> DemoData:
    """Every data set of the demo, reproducibly from ``seed``."""
    rng = np.random.default_rng(seed)
    everyone = Population(share_b=0.4)
    sets: dict[str, TrainingSet] = {}
    for version, rows, population, name, description in (
        ("1", V1_ROWS, everyone, "applications-2023", "1,250 applications"),
        ("2", V2_ROWS, everyone, "applications-2024", "20,000 applications"),
        (
            "3",
            V3_ROWS,
            Population(share_b=V3_SHARE_B),
            "applications-2024-rebuilt",
            "20,000 applications from a rebuilt pipeline that dropped almost all of group b",
        ),
    ):
        train, validation = split(applications(rows, population, rng), VALIDATION_SHARE, rng)
        sets[version] = TrainingSet(name, description, train, validation)
    live = applications(
        LIVE_ROWS, Population(share_b=0.4, unseen_employment=LIVE_UNSEEN_EMPLOYMENT), rng
    )
    return DemoData(sets, live)
