"""The demo's trained versions, built once: training the three takes a few seconds, and
every test only reads them."""

from __future__ import annotations

import pytest

from tests.unit.demo.trained import DEMO_SEED, Trained, train_all


@pytest.fixture(scope="session")
def trained() -> Trained:
    """The demo's own data and versions (its default seed)."""
    return train_all(DEMO_SEED)
