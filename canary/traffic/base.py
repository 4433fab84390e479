"""What every traffic router offers, and the small value types they share.

A router moves live traffic between two arms of one model: the *champion* (the version in
production) and the *canary* (the version under test). The daemon calls it on every tick and
again after a crash with whatever the store says, so every method is idempotent: applying the
same weights twice, or pointing an arm at the address it already has, changes nothing and is
cheap. A call that fails raises :class:`~canary.errors.RouterError`, leaves the last good
state in place and can simply be retried.

Weights are percentages so that policies and the store speak one language; each proxy maps
them to its own units (HAProxy 0-256, nginx ``weight=`` with ``down`` for zero, Envoy
``weighted_clusters``). Proxies cannot represent every percentage exactly, so ``apply``
returns the weights the proxy really holds and ``read`` returns the same value afterwards.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal, Protocol

Arm = Literal["champion", "canary"]
ARMS: tuple[Arm, Arm] = ("champion", "canary")

# Percentages are kept to basis points (0.01 %): finer than any canary step anyone writes and
# coarse enough that a float from YAML and the same float read back from a proxy compare equal.
_BASIS_POINTS = 10_000

_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_PORT = re.compile(r"^[0-9]{1,5}$")


@dataclass(frozen=True, slots=True)
class Weights:
    """Share of new requests per arm, in percent; the champion gets ``100 - canary``.

    Only the canary share is stored, so the two can never disagree. Values are rounded to
    basis points on construction, which makes equality between what was asked, what was
    applied and what was read back exact.
    """

    canary: float

    def __post_init__(self) -> None:
        value = float(self.canary)
        if not math.isfinite(value) or not 0.0 <= value <= 100.0:
            raise ValueError(f"canary weight must be a percentage in [0, 100], got {value!r}")
        object.__setattr__(self, "canary", round(value * 100) / 100)

    @property
    def champion(self) -> float:
        return round((100.0 - self.canary) * 100) / 100

    @property
    def canary_basis_points(self) -> int:
        return round(self.canary * 100)

    @classmethod
    def from_units(cls, champion: int, canary: int) -> Weights:
        """The percentages a proxy's relative integer weights amount to."""
        if champion < 0 or canary < 0:
            raise ValueError(f"proxy weights cannot be negative: {champion}, {canary}")
        if champion + canary == 0:
            raise ValueError("both arms have weight 0: the proxy would route nothing")
        return cls(canary=100.0 * canary / (champion + canary))

    def to_units(self, max_unit: int) -> tuple[int, int]:
        """Integer weights ``(champion, canary)``, each at most ``max_unit``, for a proxy.

        The smallest pair that expresses the percentage exactly when the proxy's range
        allows it (10 % is ``(9, 1)``), otherwise the closest pair it can hold. An arm asked
        for a non-zero share never gets 0 units: a canary step of 0.1 % on HAProxy becomes
        the smallest share HAProxy has (1 in 257), not silently no traffic at all.
        """
        if max_unit < 1:
            raise ValueError(f"max_unit must be at least 1, got {max_unit}")
        bp = self.canary_basis_points
        if bp == 0:
            return (1, 0)
        if bp == _BASIS_POINTS:
            return (0, 1)
        ratio = Fraction(bp, _BASIS_POINTS - bp)  # canary / champion
        if ratio <= 1:
            approx = ratio.limit_denominator(max_unit)
            if approx == 0:
                return (max_unit, 1)
            return (approx.denominator, approx.numerator)
        approx = (1 / ratio).limit_denominator(max_unit)
        if approx == 0:
            return (1, max_unit)
        return (approx.numerator, approx.denominator)

    def __str__(self) -> str:
        return f"{self.champion:g}/{self.canary:g}"


CHAMPION_ONLY = Weights(canary=0.0)
CANARY_ONLY = Weights(canary=100.0)


@dataclass(frozen=True, slots=True)
class Address:
    """Where a backend listens: an IP literal or a DNS host name, and a TCP port.

    Addresses come from templates filled with registry data and end up in proxy commands
    and config files, so they are parsed strictly rather than passed through: no spaces,
    no semicolons, no paths, nothing a proxy could read as a second directive.
    """

    host: str
    port: int

    def __post_init__(self) -> None:
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise ValueError(f"port must be an int, got {self.port!r}")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is outside 1-65535")
        if not _valid_host(self.host):
            raise ValueError(f"invalid host {self.host!r}: an IP address or a DNS host name")

    @classmethod
    def parse(cls, text: str) -> Address:
        """``127.0.0.1:8080``, ``[::1]:8080`` or ``model-a.internal:8080``."""
        if not isinstance(text, str):
            raise ValueError(f"an address must be a string, got {text!r}")
        if text.startswith("["):
            host, sep, port = text[1:].partition("]:")
            if not sep or ":" not in host:
                raise ValueError(f"invalid address {text!r}: write [IPv6]:port")
        else:
            host, sep, port = text.rpartition(":")
            if not sep or ":" in host:
                raise ValueError(f"invalid address {text!r}: write host:port")
        if not _PORT.fullmatch(port):
            raise ValueError(f"invalid port in address {text!r}")
        return cls(host=host, port=int(port))

    @property
    def ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        """The host as an IP address, or None when it is a host name."""
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None

    @property
    def is_loopback(self) -> bool:
        ip = self.ip
        return ip.is_loopback if ip is not None else self.host == "localhost"

    def __str__(self) -> str:
        if self.ip is not None and self.ip.version == 6:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def _valid_host(host: object) -> bool:
    if not isinstance(host, str) or not host:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return "%" not in host  # no IPv6 zone ids: they name local interfaces
    if len(host) > 253 or host.endswith("."):
        return False
    labels = host.split(".")
    if labels[-1].isdigit():  # 300.1.1.1 or 127.1 are not host names
        return False
    return all(_HOST_LABEL.fullmatch(label) for label in labels)


class Router(Protocol):
    """Shifts traffic between the champion and canary arms of one model through a proxy.

    Every method is idempotent and safe to call at any time, which is what lets the daemon
    reconcile the proxy with its store after a crash by simply applying the stored state.
    """

    def check(self) -> None:
        """Raise RouterError when the proxy cannot be reached or is not set up for us."""

    def read(self) -> Weights:
        """The weights the proxy holds right now."""

    def apply(self, weights: Weights) -> Weights:
        """Make the proxy route ``weights``; return what it really holds (its resolution).

        On failure the proxy keeps the weights it had and RouterError is raised.
        """

    def set_backend(self, arm: Arm, address: Address) -> None:
        """Point ``arm`` at ``address``, creating the arm in the proxy if it is missing.

        Never changes the split: an arm that did not exist or was switched off comes up
        with weight 0. Re-pointing an arm that carries traffic moves that traffic at once,
        so callers move traffic away first (``apply``) and re-point second.
        """
