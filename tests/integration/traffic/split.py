"""The split check every router must pass, on real requests through a real proxy.

With two backends (blue = champion, green = canary) and requests flowing the whole time, the
router is set to each weight in turn; after each change the observed canary share of the
requests that started after it must be within 3 percentage points of what the router says it
applied, and not one request may fail across all the changes.
"""

from __future__ import annotations

import math
import time

from canary.traffic.base import Router, Weights
from tests.harness.backends import BackendPair
from tests.integration.traffic.load import Load

# Canary shares in turn: 10 then 50 % of traffic to the canary, everything to it (a
# promotion), then everything back to the champion (a rollback). In champion/canary terms
# that is 90/10, 50/50, 0/100 and 100/0, so both readings of "10/90 then 50/50 then 0/100"
# are covered.
SEQUENCE = (Weights(canary=10), Weights(canary=50), Weights(canary=100), Weights(canary=0))
TOLERANCE = 3.0  # percentage points
# Requests from connections opened before a change may still use the old weights (nginx's
# old workers finish them, Envoy's workers pick up a route a moment later); leave them out.
SETTLE = 100


def requests_needed(weights: Weights, deterministic: bool) -> int:
    """How many requests make the 3-point check meaningful for this proxy.

    HAProxy and nginx pick servers by weighted round robin, so 1,000 requests land within a
    request or two of the exact split. Envoy picks a cluster at random per request: the share
    is binomial, and 3 points must be at least 3.7 standard deviations so that a correct
    router fails this check less than once in 5,000 runs.
    """
    p = weights.canary / 100
    if deterministic or p in (0.0, 1.0):
        return 1000
    sd_needed = TOLERANCE / 100 / 3.7
    return max(1000, math.ceil(p * (1 - p) / sd_needed**2))


def check_split_follows_weights(
    router: Router,
    url: str,
    backends: BackendPair,
    *,
    deterministic: bool,
    closes_connections: bool = False,
) -> list[tuple[Weights, float, int]]:
    """Run the sequence under load; return (applied, observed canary %, requests) per step.

    A proxy that ``closes_connections`` on a change (nginx's reload retires the workers that
    hold the clients' kept-alive connections) may make each client resend a request once per
    change, as HTTP clients do; any other proxy must not make a client retry at all.
    """
    observed: list[tuple[Weights, float, int]] = []
    with Load(url) as load:
        load.split_after(time.monotonic(), 50)  # traffic is flowing before the first change
        for wanted in SEQUENCE:
            applied = router.apply(wanted)
            since = time.monotonic()
            assert applied == wanted, f"{router} applied {applied} for {wanted}"
            assert router.read() == applied
            count = requests_needed(applied, deterministic)
            split = load.split_after(since, count, skip=SETTLE)
            assert set(split) <= {backends.blue.name, backends.green.name}, split
            canary_share = 100.0 * split[backends.green.name] / count
            observed.append((applied, canary_share, count))
            assert abs(canary_share - applied.canary) <= TOLERANCE, (
                f"asked {applied}: canary got {canary_share:.2f}% of {count} requests"
            )
        errors = load.errors
        total = load.total
        retries = load.retries
    assert total > 0
    assert errors == [], f"{len(errors)} of {total} requests failed, first: {errors[0]}"
    allowed = load.threads * len(SEQUENCE) if closes_connections else 0
    assert retries <= allowed, f"{retries} requests had to be resent (allowed {allowed})"
    return observed
