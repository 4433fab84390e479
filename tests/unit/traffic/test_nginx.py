"""The nginx include file: what the router writes is what it reads back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from canary.errors import RouterError
from canary.traffic.base import Address
from canary.traffic.nginx import NginxRouter, Upstream, parse_upstream, weights_of

addresses = st.builds(
    Address,
    host=st.sampled_from(["127.0.0.1", "::1", "localhost", "model-7.serving"]),
    port=st.integers(min_value=1, max_value=65535),
)


@given(
    champion=st.none() | addresses,
    canary=st.none() | addresses,
    champion_units=st.integers(min_value=0, max_value=10_000),
    canary_units=st.integers(min_value=0, max_value=10_000),
)
def test_render_then_parse_gives_the_same_upstream(
    champion: Address | None, canary: Address | None, champion_units: int, canary_units: int
) -> None:
    upstream = Upstream(
        name="credit_risk",
        champion=champion,
        canary=canary,
        champion_units=champion_units if champion else 0,
        canary_units=canary_units if canary else 0,
    )
    assert parse_upstream(upstream.render(), "test.conf") == upstream


def test_zero_is_written_down_because_nginx_refuses_weight_0() -> None:
    upstream = Upstream(
        name="app",
        champion=Address.parse("127.0.0.1:1"),
        canary=Address.parse("[::1]:2"),
        champion_units=0,
        canary_units=1,
    )
    text = upstream.render()
    assert "server 127.0.0.1:1 down;  # canary:champion" in text
    assert "server [::1]:2 weight=1;  # canary:canary" in text
    assert "weight=0" not in text
    assert text.count("{") == text.count("}") == 1


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("upstream app {\n    server 127.0.0.1:1 weight=1;\n}\n", "not a line canary writes"),
        ("upstream app {\n    keepalive 16;\n}\n", "not a line canary writes"),
        (
            "upstream app {\n    server 127.0.0.1:1;  # canary:champion\n"
            "    server 127.0.0.1:2;  # canary:champion\n}\n",
            "not a line canary writes",
        ),
        ("upstream app {\n    server 127.0.0.1:99999;  # canary:champion\n}\n", "outside"),
        ("# nothing here\n", "no upstream block"),
    ],
)
def test_a_file_canary_did_not_write_is_refused_with_its_line(text: str, problem: str) -> None:
    with pytest.raises(RouterError, match=problem):
        parse_upstream(text, "upstream.conf")


def test_a_server_without_weight_counts_as_weight_1() -> None:
    upstream = parse_upstream(
        "upstream app {\n    server 127.0.0.1:1;  # canary:champion\n}\n", "upstream.conf"
    )
    assert upstream.champion_units == 1


def test_an_upstream_with_no_traffic_anywhere_is_an_error() -> None:
    upstream = Upstream(name="app", champion=Address.parse("127.0.0.1:1"))
    with pytest.raises(RouterError, match="route nothing"):
        weights_of(upstream)


def test_router_checks_names_and_reads_only_its_own_upstream(tmp_path) -> None:
    with pytest.raises(ValueError, match="upstream"):
        NginxRouter("app { }", tmp_path / "u.conf")
    include = tmp_path / "u.conf"
    include.write_text("upstream other {\n    server 127.0.0.1:1;  # canary:champion\n}\n")
    with pytest.raises(RouterError, match="defines upstream 'other'"):
        NginxRouter("app", include).read()
    with pytest.raises(RouterError, match="cannot read"):
        NginxRouter("app", tmp_path / "missing.conf").read()
