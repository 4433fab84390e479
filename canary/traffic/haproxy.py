"""HAProxy through its runtime API: weights and canary servers change with no reload.

The runtime API (``stats socket ... level admin``) takes one command per connection and
answers with an empty line on success; anything else is HAProxy refusing, which becomes a
RouterError carrying its words. Every change starts by reading ``show servers state`` so
commands are only sent for what differs (a tick that changes nothing sends nothing), and a
change made of several commands is undone if a later one is refused, so a failed ``apply``
leaves the weights it found.

``read`` reports the weights of servers that are administratively up (a server in
maintenance or draining counts as 0); whether a health check currently marks one down is
health, not weight, and is left to the metrics.

Runtime changes live in HAProxy's memory: a reload forgets them unless the configuration
uses a server-state file. The daemon reconciles every tick, so it puts them back anyway.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from canary.core import names
from canary.errors import RouterError
from canary.log import get_logger
from canary.traffic.base import Address, Arm, Weights

log = get_logger(__name__)

MAX_WEIGHT = 256
"""HAProxy's largest absolute server weight (``set weight be/srv N``)."""

# srv_admin_state bits that stop new requests reaching a server: forced, inherited and
# configured maintenance, forced and inherited drain, and resolution failure. 0x40 only says
# the FQDN was set at runtime and is not a stop.
_NOT_SERVING = 0x01 | 0x02 | 0x04 | 0x08 | 0x10 | 0x20
_STATE_HEADER = "# be_id be_name srv_id srv_name srv_addr"


class RuntimeChannel(Protocol):
    """Sends one runtime API command and returns HAProxy's whole reply."""

    def send(self, command: str) -> str: ...


@dataclass(frozen=True, slots=True)
class RuntimeAPI:
    """A runtime API endpoint: ``unix:/path``, ``tcp:127.0.0.1:9999`` or ``127.0.0.1:9999``."""

    unix_path: str | None
    tcp: Address | None
    timeout: float

    @classmethod
    def parse(cls, spec: str, timeout: float) -> RuntimeAPI:
        if spec.startswith("unix:"):
            path = spec.removeprefix("unix:")
            if not path or any(c in path for c in "\n\r\x00"):
                raise ValueError(f"invalid runtime_api {spec!r}: write unix:/path/to/socket")
            return cls(unix_path=path, tcp=None, timeout=timeout)
        return cls(unix_path=None, tcp=Address.parse(spec.removeprefix("tcp:")), timeout=timeout)

    def __str__(self) -> str:
        return f"unix:{self.unix_path}" if self.unix_path is not None else f"tcp:{self.tcp}"

    def send(self, command: str) -> str:
        """One command on one connection; the reply is read until HAProxy closes."""
        if any(c in command for c in "\n\r;\x00"):
            raise ValueError(f"refusing a runtime API command with separators: {command!r}")
        deadline = time.monotonic() + self.timeout
        try:
            with self._connect() as sock:
                sock.sendall(command.encode() + b"\n")
                chunks: list[bytes] = []
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError("no complete reply before the timeout")
                    sock.settimeout(remaining)
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
        except OSError as exc:  # refused, missing socket file, timeout, reset
            raise RouterError(
                f"HAProxy runtime API {self} unreachable ({command.split()[0]} ...): {exc}"
            ) from exc
        return b"".join(chunks).decode(errors="replace")

    def _connect(self) -> socket.socket:
        if self.unix_path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target: str | tuple[str, int] = self.unix_path
        else:
            assert self.tcp is not None
            family = socket.AF_INET6 if ":" in self.tcp.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            target = (self.tcp.host, self.tcp.port)
        try:
            sock.settimeout(self.timeout)
            sock.connect(target)
        except OSError:
            sock.close()
            raise
        return sock


@dataclass(frozen=True, slots=True)
class ServerState:
    """One line of ``show servers state``: the fields a router decides on."""

    name: str
    addr: str
    port: int
    admin_state: int
    weight: int

    @property
    def serving(self) -> bool:
        """Whether new requests can reach it (not in maintenance, not draining)."""
        return self.admin_state & _NOT_SERVING == 0

    @property
    def effective_weight(self) -> int:
        return self.weight if self.serving else 0

    def is_at(self, address: Address) -> bool:
        if address.port != self.port:
            return False
        try:
            return ipaddress.ip_address(self.addr) == address.ip
        except ValueError:
            return False


def parse_servers_state(reply: str, backend: str) -> dict[str, ServerState]:
    """Servers of ``backend`` from a ``show servers state <backend>`` reply.

    The reply names its columns in a header line, so columns are found by name: HAProxy
    versions add columns at the end.
    """
    lines = reply.strip("\n").splitlines()
    if len(lines) < 2 or not lines[1].startswith(_STATE_HEADER):
        raise RouterError(
            f"HAProxy refused 'show servers state {backend}': {reply.strip() or 'empty reply'}"
        )
    columns = lines[1].removeprefix("# ").split()
    servers: dict[str, ServerState] = {}
    for line in lines[2:]:
        if not line.strip():
            continue
        row = dict(zip(columns, line.split(), strict=False))
        if row.get("be_name") != backend:
            continue
        try:
            state = ServerState(
                name=row["srv_name"],
                addr=row["srv_addr"],
                port=int(row["srv_port"]),
                admin_state=int(row["srv_admin_state"]),
                weight=int(row["srv_uweight"]),
            )
        except (KeyError, ValueError) as exc:
            raise RouterError(f"unexpected 'show servers state' line {line!r}") from exc
        servers[state.name] = state
    return servers


def _empty(reply: str) -> bool:
    return reply.strip() == ""


def _added(reply: str) -> bool:
    return reply.strip() == "New server registered."


def _addr_set(reply: str) -> bool:
    """``set server addr`` answers with what it changed, or that nothing needed changing."""
    text = reply.strip()
    suffix = " by 'stats socket command'"
    if not text.endswith(suffix):
        return False
    parts = text.removesuffix(suffix).split(", ")
    return all(part.startswith(_ADDR_REPLIES) for part in parts)


_ADDR_REPLIES = ("IP changed from", "port changed from", "no need to change")


class HAProxyRouter:
    """Champion and canary as two servers of one HAProxy backend, driven at runtime."""

    kind = "haproxy"

    def __init__(
        self,
        runtime_api: str,
        backend: str,
        *,
        champion_server: str = "champion",
        canary_server: str = "canary",
        timeout: float = 5.0,
        channel: RuntimeChannel | None = None,
    ) -> None:
        self.backend = names.check(names.PROXY_NAME, backend, "HAProxy backend name")
        self.servers: dict[Arm, str] = {
            "champion": names.check(names.PROXY_NAME, champion_server, "HAProxy server name"),
            "canary": names.check(names.PROXY_NAME, canary_server, "HAProxy server name"),
        }
        if champion_server == canary_server:
            raise ValueError("champion and canary must be different HAProxy servers")
        self.channel: RuntimeChannel = channel or RuntimeAPI.parse(runtime_api, timeout)
        self._log = log.bind(router=self.kind, backend=backend)

    # --- Router ---------------------------------------------------------------------------

    def check(self) -> None:
        servers = self._state()
        champion = self.servers["champion"]
        if champion not in servers:
            raise RouterError(f"HAProxy backend {self.backend!r} has no server {champion!r}")

    def read(self) -> Weights:
        return self._weights(self._state())

    def apply(self, weights: Weights) -> Weights:
        champion_units, canary_units = weights.to_units(MAX_WEIGHT)
        servers = self._state()
        target: dict[Arm, int] = {"champion": champion_units, "canary": canary_units}
        for arm, units in target.items():
            if self.servers[arm] not in servers and units > 0:
                raise RouterError(
                    f"HAProxy backend {self.backend!r} has no {arm} server "
                    f"{self.servers[arm]!r}: set_backend({arm!r}, address) first"
                )
        # Raise the arm that gains first and lower the other second, so the split passes
        # through values between the old and the new one and never has both arms at 0.
        order = sorted(target, key=lambda arm: self._gain(servers, arm, target[arm]), reverse=True)
        undo: list[str] = []
        for arm in order:
            server = servers.get(self.servers[arm])
            if server is None:
                continue
            name = f"{self.backend}/{server.name}"
            if server.weight != target[arm]:
                self._run(f"set weight {name} {target[arm]}", _empty, undo)
                undo.append(f"set weight {name} {server.weight}")
            if target[arm] > 0 and not server.serving:
                self._run(f"set server {name} state ready", _empty, undo)
                undo.append(f"set server {name} state maint")
        applied = Weights.from_units(champion_units, canary_units)
        if undo:
            self._log.info(
                "router.weights_applied",
                champion=applied.champion,
                canary=applied.canary,
                units=[champion_units, canary_units],
            )
        return applied

    def set_backend(self, arm: Arm, address: Address) -> None:
        ip = address.ip
        if ip is None:
            raise RouterError(
                f"HAProxy's runtime API takes an IP address, not the host name {address.host!r}"
            )
        name = f"{self.backend}/{self.servers[arm]}"
        server = self._state().get(self.servers[arm])
        undo: list[str] = []
        if server is None:
            self._run(f"add server {name} {address} weight 0", _added, undo)
            undo.extend([f"del server {name}", f"set server {name} state maint"])
            self._run(f"set server {name} state ready", _empty, undo)
            self._log.info("router.backend_added", arm=arm, server=name, address=str(address))
            return
        if not server.serving and server.weight != 0:
            # A switched-off server keeps the weight it had; it comes back at 0.
            self._run(f"set weight {name} 0", _empty, undo)
            undo.append(f"set weight {name} {server.weight}")
        if not server.is_at(address):
            self._run(f"set server {name} addr {ip} port {address.port}", _addr_set, undo)
            undo.append(f"set server {name} addr {server.addr} port {server.port}")
            self._log.info("router.backend_moved", arm=arm, server=name, address=str(address))
        if not server.serving:
            self._run(f"set server {name} state ready", _empty, undo)

    # --- internals ------------------------------------------------------------------------

    def _state(self) -> dict[str, ServerState]:
        return parse_servers_state(
            self.channel.send(f"show servers state {self.backend}"), self.backend
        )

    def _weights(self, servers: dict[str, ServerState]) -> Weights:
        units = {
            arm: (servers[name].effective_weight if name in servers else 0)
            for arm, name in self.servers.items()
        }
        if units["champion"] + units["canary"] == 0:
            raise RouterError(
                f"HAProxy backend {self.backend!r}: neither {self.servers['champion']!r} nor "
                f"{self.servers['canary']!r} takes traffic"
            )
        return Weights.from_units(units["champion"], units["canary"])

    def _gain(self, servers: dict[str, ServerState], arm: Arm, units: int) -> int:
        server = servers.get(self.servers[arm])
        return units - (server.effective_weight if server is not None else 0)

    def _run(self, command: str, accepted: Callable[[str], bool], undo: list[str]) -> None:
        """Send ``command``; if HAProxy refuses it, undo what this call already changed."""
        try:
            reply = self.channel.send(command)
        except RouterError as exc:
            self._undo(undo, exc)
            raise
        if not accepted(reply):
            error = RouterError(f"HAProxy refused {command!r}: {reply.strip() or 'no reply'}")
            self._undo(undo, error)
            raise error

    def _undo(self, undo: list[str], error: RouterError) -> None:
        for command in reversed(undo):
            try:
                reply = self.channel.send(command)
            except RouterError as exc:
                reply = str(exc)
            self._log.warning(
                "router.change_undone", command=command, reply=reply.strip(), cause=str(error)
            )
