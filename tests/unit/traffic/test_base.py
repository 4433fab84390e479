"""Weights and addresses: the values every router takes and returns."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from canary.traffic.base import CANARY_ONLY, CHAMPION_ONLY, Address, Weights

basis_points = st.integers(min_value=0, max_value=10_000)
max_units = st.sampled_from([1, 2, 3, 7, 100, 256, 10_000])


class TestWeights:
    def test_champion_is_the_rest_of_the_traffic(self) -> None:
        assert Weights(canary=12.5).champion == 87.5
        assert CHAMPION_ONLY.champion == 100.0
        assert CANARY_ONLY.champion == 0.0
        assert str(Weights(canary=10)) == "90/10"

    @pytest.mark.parametrize("bad", [-0.01, 100.01, math.nan, math.inf, -math.inf])
    def test_rejects_what_is_not_a_percentage(self, bad: float) -> None:
        with pytest.raises(ValueError, match="percentage"):
            Weights(canary=bad)

    def test_rounds_to_basis_points_so_equal_shares_compare_equal(self) -> None:
        assert Weights(canary=0.1 + 0.2) == Weights(canary=0.3)
        assert Weights(canary=100 / 3) == Weights(canary=33.33)
        assert Weights.from_units(2, 1) == Weights(canary=33.33)

    def test_from_units_refuses_a_proxy_that_routes_nothing(self) -> None:
        with pytest.raises(ValueError, match="route nothing"):
            Weights.from_units(0, 0)
        with pytest.raises(ValueError, match="negative"):
            Weights.from_units(-1, 3)

    @given(basis_points, max_units)
    def test_units_fit_the_proxy_and_never_route_nothing(self, bp: int, max_unit: int) -> None:
        champion, canary = Weights(canary=bp / 100).to_units(max_unit)
        assert 0 <= champion <= max_unit
        assert 0 <= canary <= max_unit
        # An arm gets 0 units exactly when it was asked for 0 %: a tiny canary step still
        # sends the canary some traffic, and a full promotion sends the champion none.
        assert (canary == 0) == (bp == 0)
        assert (champion == 0) == (bp == 10_000)

    @given(basis_points, max_units)
    def test_units_are_the_closest_the_proxy_can_hold(self, bp: int, max_unit: int) -> None:
        wanted = Weights(canary=bp / 100)
        got = Weights.from_units(*wanted.to_units(max_unit))
        # The finest step of a proxy with weights up to M is one request in M + 1.
        assert abs(got.canary - wanted.canary) <= 100 / (max_unit + 1) + 1e-9

    @given(basis_points, max_units)
    def test_applying_what_was_read_back_changes_nothing(self, bp: int, max_unit: int) -> None:
        # A reconcile applies the weights it read; that must be a fixed point, not a drift.
        units = Weights(canary=bp / 100).to_units(max_unit)
        applied = Weights.from_units(*units)
        assert Weights.from_units(*applied.to_units(max_unit)) == applied

    @given(st.integers(min_value=0, max_value=100))
    def test_whole_percentages_are_exact_from_100_units_up(self, percent: int) -> None:
        for max_unit in (100, 256, 10_000):
            wanted = Weights(canary=percent)
            assert Weights.from_units(*wanted.to_units(max_unit)) == wanted

    def test_units_are_in_lowest_terms(self) -> None:
        assert Weights(canary=10).to_units(10_000) == (9, 1)
        assert Weights(canary=50).to_units(256) == (1, 1)
        assert Weights(canary=0.5).to_units(10_000) == (199, 1)
        assert Weights(canary=0.1).to_units(256) == (256, 1)
        assert Weights(canary=99.9).to_units(256) == (1, 256)


class TestAddress:
    @pytest.mark.parametrize(
        ("text", "host", "port"),
        [
            ("127.0.0.1:8080", "127.0.0.1", 8080),
            ("[::1]:9000", "::1", 9000),
            ("localhost:1", "localhost", 1),
            ("model-a.serving.internal:65535", "model-a.serving.internal", 65535),
        ],
    )
    def test_parses_and_prints_back(self, text: str, host: str, port: int) -> None:
        address = Address.parse(text)
        assert (address.host, address.port) == (host, port)
        assert str(address) == text

    @pytest.mark.parametrize(
        "text",
        [
            "127.0.0.1",
            "127.0.0.1:",
            "127.0.0.1:0",
            "127.0.0.1:65536",
            "127.0.0.1:+80",
            "127.0.0.1:80 ",
            " 127.0.0.1:80",
            "::1:80",
            "[127.0.0.1]:80",
            "host name:80",
            "a;b:80",
            "backend:80;\nserver evil:1",
            "-leading-dash:80",
            "trailing-.example:80",
            "300.1.1.1:80",
            "127.1:80",
            "[fe80::1%eth0]:80",
            "http://127.0.0.1:80",
            "x" * 64 + ":80",
            ":80",
        ],
    )
    def test_rejects_anything_a_proxy_could_misread(self, text: str) -> None:
        with pytest.raises(ValueError, match=r"invalid|outside"):
            Address.parse(text)

    def test_ip_and_loopback(self) -> None:
        assert Address.parse("127.0.0.2:1").is_loopback
        assert Address.parse("[::1]:1").is_loopback
        assert Address.parse("localhost:1").is_loopback
        assert not Address.parse("10.0.0.1:1").is_loopback
        assert Address.parse("localhost:1").ip is None

    def test_port_must_be_an_int(self) -> None:
        with pytest.raises(ValueError, match="port"):
            Address("127.0.0.1", True)
