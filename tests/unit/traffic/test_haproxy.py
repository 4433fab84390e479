"""HAProxyRouter's decisions, against a fake of our own RuntimeChannel (no HAProxy here).

The real runtime API is exercised in tests/integration/traffic/test_haproxy.py; these tests
pin down what is hard to provoke on a real HAProxy: which commands go out in which order,
and that a change refused half-way is undone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from canary.errors import RouterError
from canary.traffic.base import Address, Weights
from canary.traffic.haproxy import HAProxyRouter, RuntimeAPI, parse_servers_state

# Captured from HAProxy 2.6: `show servers state app` with a dynamic canary server.
STATE = (
    "1\n"
    "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight "
    "srv_iweight srv_time_since_last_change srv_check_status srv_check_result "
    "srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id "
    "srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr "
    "srv_agent_port\n"
    "3 app 1 champion 127.0.0.1 2 0 10 1 2 1 0 2 0 0 0 0 - 19001 - 0 0 - - 0\n"
    "3 app 2 canary 127.0.0.1 0 1 0 0 0 1 0 0 0 0 0 0 - 19003 - 0 0 - - 0\n"
    "\n"
)
HEADER = STATE.splitlines()[1]


@dataclass
class Server:
    addr: str
    port: int
    weight: int = 1
    admin: int = 0


@dataclass
class FakeRuntime:
    """Answers like HAProxy's runtime API for the handful of commands the router sends."""

    servers: dict[str, Server]
    refuse: set[str] = field(default_factory=set)
    sent: list[str] = field(default_factory=list)

    def send(self, command: str) -> str:
        self.sent.append(command)
        if any(command.startswith(prefix) for prefix in self.refuse):
            return "Refused on purpose.\n\n"
        words = command.split()
        if words[:3] == ["show", "servers", "state"]:
            rows = [
                f"3 app {i} {name} {s.addr} 2 {s.admin} {s.weight} 1 0 1 0 2 0 0 0 0 - {s.port}"
                " - 0 0 - - 0"
                for i, (name, s) in enumerate(self.servers.items(), start=1)
            ]
            return "1\n" + HEADER + "\n" + "\n".join(rows) + "\n\n"
        name = words[2].split("/")[1]
        if words[:2] == ["set", "weight"]:
            self.servers[name].weight = int(words[3])
        elif words[:2] == ["add", "server"]:
            host, port = words[3].rsplit(":", 1)
            self.servers[name] = Server(host, int(port), weight=int(words[5]), admin=1)
            return "New server registered.\n\n"
        elif words[:2] == ["del", "server"]:
            del self.servers[name]
            return "Server deleted.\n\n"
        elif words[3:5] == ["state", "ready"]:
            self.servers[name].admin = 0
        elif words[3:5] == ["state", "maint"]:
            self.servers[name].admin = 1
        elif words[3] == "addr":
            self.servers[name].addr, self.servers[name].port = words[4], int(words[6])
            return "IP changed from 'x' to 'y' by 'stats socket command'\n\n"
        return "\n"

    @property
    def changes(self) -> list[str]:
        return [c for c in self.sent if not c.startswith("show")]


def _router(fake: FakeRuntime) -> HAProxyRouter:
    return HAProxyRouter("127.0.0.1:1", "app", channel=fake)


def test_parses_servers_state_by_column_name() -> None:
    servers = parse_servers_state(STATE, "app")
    assert servers["champion"].weight == 10
    assert servers["champion"].serving
    assert servers["canary"].port == 19003
    assert not servers["canary"].serving  # admin state 1: forced maintenance
    assert servers["canary"].effective_weight == 0


@pytest.mark.parametrize("reply", ["Can't find backend.\n\n", "", "Unknown command.\n"])
def test_a_reply_that_is_not_a_state_dump_is_an_error(reply: str) -> None:
    with pytest.raises(RouterError, match="refused 'show servers state app'"):
        parse_servers_state(reply, "app")


def test_the_arm_that_gains_moves_first_so_both_never_reach_zero() -> None:
    fake = FakeRuntime({"champion": Server("127.0.0.1", 1, 1), "canary": Server("127.0.0.1", 2, 0)})
    assert _router(fake).apply(Weights(canary=100)) == Weights(canary=100)
    assert fake.changes == ["set weight app/canary 1", "set weight app/champion 0"]
    fake.sent.clear()
    _router(fake).apply(Weights(canary=0))
    assert fake.changes == ["set weight app/champion 1", "set weight app/canary 0"]


def test_nothing_is_sent_when_the_weights_are_already_there() -> None:
    fake = FakeRuntime({"champion": Server("127.0.0.1", 1, 9), "canary": Server("127.0.0.1", 2, 1)})
    assert _router(fake).apply(Weights(canary=10)) == Weights(canary=10)
    assert fake.changes == []


def test_a_change_refused_half_way_is_undone() -> None:
    fake = FakeRuntime(
        {"champion": Server("127.0.0.1", 1, 9), "canary": Server("127.0.0.1", 2, 1)},
        refuse={"set weight app/champion"},
    )
    with pytest.raises(RouterError, match="Refused on purpose"):
        _router(fake).apply(Weights(canary=90))
    assert fake.changes == [
        "set weight app/canary 9",
        "set weight app/champion 1",  # refused
        "set weight app/canary 1",  # undo
    ]
    assert (fake.servers["champion"].weight, fake.servers["canary"].weight) == (9, 1)


def test_undo_restores_weight_and_maintenance_of_an_enabled_arm() -> None:
    fake = FakeRuntime(
        {"champion": Server("127.0.0.1", 1, 5), "canary": Server("127.0.0.1", 2, 5, admin=1)},
        refuse={"set weight app/champion"},
    )
    with pytest.raises(RouterError, match="Refused on purpose"):
        _router(fake).apply(Weights(canary=90))
    assert fake.changes == [
        "set weight app/canary 9",
        "set server app/canary state ready",
        "set weight app/champion 1",  # refused
        "set server app/canary state maint",
        "set weight app/canary 5",
    ]
    assert fake.servers["canary"] == Server("127.0.0.1", 2, 5, admin=1)


def test_apply_needs_the_canary_server_to_exist() -> None:
    fake = FakeRuntime({"champion": Server("127.0.0.1", 1, 1)})
    with pytest.raises(RouterError, match=r"set_backend\('canary'"):
        _router(fake).apply(Weights(canary=10))
    assert fake.changes == []
    # With no canary share, a missing canary server is fine: nothing to route to it.
    assert _router(fake).apply(Weights(canary=0)) == Weights(canary=0)


def test_read_refuses_a_backend_with_no_traffic_anywhere() -> None:
    fake = FakeRuntime(
        {"champion": Server("127.0.0.1", 1, 0), "canary": Server("127.0.0.1", 2, 3, 1)}
    )
    with pytest.raises(RouterError, match="neither"):
        _router(fake).read()


def test_set_backend_adds_a_missing_server_idle_and_enabled() -> None:
    fake = FakeRuntime({"champion": Server("127.0.0.1", 1, 1)})
    _router(fake).set_backend("canary", Address.parse("127.0.0.1:7000"))
    assert fake.changes == [
        "add server app/canary 127.0.0.1:7000 weight 0",
        "set server app/canary state ready",
    ]
    assert fake.servers["canary"] == Server("127.0.0.1", 7000, 0, 0)


def test_set_backend_that_fails_to_enable_removes_the_new_server() -> None:
    fake = FakeRuntime(
        {"champion": Server("127.0.0.1", 1, 1)}, refuse={"set server app/canary state ready"}
    )
    with pytest.raises(RouterError):
        _router(fake).set_backend("canary", Address.parse("127.0.0.1:7000"))
    assert fake.changes[-2:] == ["set server app/canary state maint", "del server app/canary"]
    assert "canary" not in fake.servers


def test_set_backend_brings_a_disabled_server_back_at_weight_zero() -> None:
    fake = FakeRuntime(
        {"champion": Server("127.0.0.1", 1, 1), "canary": Server("127.0.0.1", 2, 40, 1)}
    )
    _router(fake).set_backend("canary", Address.parse("127.0.0.1:7000"))
    assert fake.changes == [
        "set weight app/canary 0",
        "set server app/canary addr 127.0.0.1 port 7000",
        "set server app/canary state ready",
    ]


def test_set_backend_to_the_same_address_sends_nothing() -> None:
    fake = FakeRuntime({"champion": Server("127.0.0.1", 1, 1), "canary": Server("127.0.0.1", 2, 1)})
    _router(fake).set_backend("canary", Address.parse("127.0.0.1:2"))
    assert fake.changes == []


def test_names_are_validated_before_they_reach_a_command() -> None:
    with pytest.raises(ValueError, match="backend"):
        HAProxyRouter("127.0.0.1:1", "app/evil")
    with pytest.raises(ValueError, match="server"):
        HAProxyRouter("127.0.0.1:1", "app", canary_server="c;shutdown")
    with pytest.raises(ValueError, match="different"):
        HAProxyRouter("127.0.0.1:1", "app", canary_server="champion")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("unix:/run/haproxy/admin.sock", "unix:/run/haproxy/admin.sock"),
        ("tcp:127.0.0.1:9999", "tcp:127.0.0.1:9999"),
        ("127.0.0.1:9999", "tcp:127.0.0.1:9999"),
        ("[::1]:9999", "tcp:[::1]:9999"),
    ],
)
def test_runtime_api_endpoints(spec: str, expected: str) -> None:
    assert str(RuntimeAPI.parse(spec, timeout=1)) == expected


@pytest.mark.parametrize("spec", ["unix:", "tcp:127.0.0.1", "127.0.0.1:99999", "haproxy.sock"])
def test_bad_runtime_api_endpoints(spec: str) -> None:
    with pytest.raises(ValueError, match=r"invalid|outside"):
        RuntimeAPI.parse(spec, timeout=1)


@pytest.mark.parametrize(
    "command", ["show info\nshutdown sessions", "show info; disable frontend x"]
)
def test_a_command_never_carries_a_second_one(command: str) -> None:
    with pytest.raises(ValueError, match="separators"):
        RuntimeAPI.parse("127.0.0.1:1", timeout=1).send(command)
