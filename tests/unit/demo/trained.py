"""The demo's data and its three versions, trained as ``canary demo`` trains them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from canary.demo.data import DemoData, demo_data
from canary.demo.models import train

DEMO_SEED = 7  # the seed `canary demo` uses


@dataclass(frozen=True)
class Trained:
    data: DemoData
    models: dict[str, Any]


def train_all(seed: int) -> Trained:
    data = demo_data(seed)
    models = {label: train(t.train, seed=int(label)) for label, t in data.versions.items()}
    return Trained(data, models)
