"""nginx: an upstream block in an include file, checked with ``nginx -t``, then reloaded.

nginx has no API for upstream weights in its open-source build, so the router owns one
include file holding one ``upstream`` block and rewrites it whole on every change::

    upstream credit_risk {
        server 127.0.0.1:18001 weight=9;  # canary:champion
        server 127.0.0.1:18002 weight=1;  # canary:canary
    }

A change is written to a temporary file and moved into place atomically, validated with
``nginx -t``, and made live with ``nginx -s reload``; if either fails the previous file is
moved back and the error carries nginx's own message, so the file on disk always matches a
configuration nginx accepted. ``apply`` returns once nginx's old workers, which keep serving
the old weights for about 100 ms after a reload, have been told to finish (Linux /proc shows
it), so new requests get the new weights from then on. nginx rejects ``weight=0``: an arm
with no share is written ``down``, which keeps its address in the file for the next step.

``read`` parses the file this router wrote (the ``# canary:<arm>`` comments mark the arms):
nginx has no way to report the weights it runs with, and after a successful reload they are
the file's.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

from canary.core import names
from canary.errors import RouterError
from canary.log import get_logger
from canary.traffic.base import ARMS, Address, Arm, Weights
from canary.traffic.files import read_optional, replace_file

log = get_logger(__name__)

MAX_WEIGHT = 10_000
"""Basis points: every percentage a policy can write is exact, reduced to lowest terms."""

_SERVER_LINE = re.compile(
    r"^\s*server\s+(?P<address>\S+?)(?:\s+weight=(?P<weight>[0-9]+))?(?P<down>\s+down)?\s*;"
    r"\s*#\s*canary:(?P<arm>champion|canary)\s*$"
)
_UPSTREAM_LINE = re.compile(r"^\s*upstream\s+(?P<name>\S+)\s*\{\s*$")
_POLL_INTERVAL = 0.005
_PID_DIRECTIVE = re.compile(r"^\s*pid\s+([^;\s]+)\s*;", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Upstream:
    """What the include file says: each arm's address (if it has one) and its weight units."""

    name: str
    champion: Address | None = None
    canary: Address | None = None
    champion_units: int = 0
    canary_units: int = 0

    def address(self, arm: Arm) -> Address | None:
        return self.champion if arm == "champion" else self.canary

    def units(self, arm: Arm) -> int:
        return self.champion_units if arm == "champion" else self.canary_units

    def weights(self) -> Weights:
        return Weights.from_units(self.champion_units, self.canary_units)

    def render(self) -> str:
        lines = [
            "# Written by canary: the champion and canary arms of one model.",
            "# Rewritten whole on every traffic change; edits here are overwritten.",
            f"upstream {self.name} {{",
        ]
        for arm in ARMS:
            address = self.address(arm)
            if address is None:
                continue
            units = self.units(arm)
            # nginx refuses weight=0; "down" keeps the address for the next step.
            share = f"weight={units}" if units > 0 else "down"
            lines.append(f"    server {address} {share};  # canary:{arm}")
        lines.append("}")
        return "\n".join(lines) + "\n"


def parse_upstream(text: str, source: str) -> Upstream:
    """Read back an include file in the format :meth:`Upstream.render` writes."""
    name: str | None = None
    found: dict[str, tuple[Address, int]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped == "}":
            continue
        if (match := _UPSTREAM_LINE.match(line)) and name is None:
            name = match["name"]
            continue
        match = _SERVER_LINE.match(line)
        if match is None or match["arm"] in found:
            raise RouterError(f"{source}:{number}: not a line canary writes: {line.strip()!r}")
        try:
            address = Address.parse(match["address"])
        except ValueError as exc:
            raise RouterError(f"{source}:{number}: {exc}") from exc
        units = 0 if match["down"] else int(match["weight"] or 1)
        found[match["arm"]] = (address, units)
    if name is None:
        raise RouterError(f"{source}: no upstream block")
    champion = found.get("champion")
    canary = found.get("canary")
    return Upstream(
        name=name,
        champion=champion[0] if champion else None,
        canary=canary[0] if canary else None,
        champion_units=champion[1] if champion else 0,
        canary_units=canary[1] if canary else 0,
    )


class NginxRouter:
    """Champion and canary as two servers of one nginx upstream, in a file nginx includes."""

    kind = "nginx"

    def __init__(
        self,
        upstream: str,
        include_file: str | os.PathLike[str],
        *,
        nginx: str = "nginx",
        conf: str | None = None,
        prefix: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.upstream = names.check(names.PROXY_NAME, upstream, "nginx upstream name")
        self.include_file = Path(include_file)
        self.timeout = timeout
        self._nginx = [nginx]
        for flag, value in (("-p", prefix), ("-c", conf)):
            if value is not None:
                self._nginx += [flag, value]
        self._prefix = prefix
        # The content nginx was last reloaded with by this process. After a restart it is
        # empty, so the first change always runs `nginx -t` and a reload even when the file
        # already holds it: a crash between writing and reloading cannot leave nginx behind.
        self._live: str | None = None
        self._pid_path: Path | None = None
        self._log = log.bind(router=self.kind, upstream=upstream)

    # --- Router ---------------------------------------------------------------------------

    def check(self) -> None:
        self._master_pid()
        self._load()

    def read(self) -> Weights:
        return weights_of(self._load())

    def apply(self, weights: Weights) -> Weights:
        current = self._load()
        champion_units, canary_units = weights.to_units(MAX_WEIGHT)
        wanted_units: dict[Arm, int] = {"champion": champion_units, "canary": canary_units}
        for arm, units in wanted_units.items():
            if units > 0 and current.address(arm) is None:
                raise RouterError(
                    f"{self.include_file} has no {arm} server: set_backend({arm!r}, address) first"
                )
        wanted = replace(current, champion_units=champion_units, canary_units=canary_units)
        if self._install(wanted):
            self._log.info(
                "router.weights_applied",
                champion=weights_of(wanted).champion,
                canary=weights_of(wanted).canary,
                units=[champion_units, canary_units],
            )
        return weights_of(wanted)

    def set_backend(self, arm: Arm, address: Address) -> None:
        exists = self.include_file.exists()
        current = self._load() if exists else Upstream(name=self.upstream)
        if arm == "champion":
            units = current.champion_units if current.champion is not None else 0
            if current.champion is None and current.canary_units == 0:
                units = 1  # a new upstream: the champion takes all traffic, as before canary
            wanted = replace(current, champion=address, champion_units=units)
        else:
            units = current.canary_units if current.canary is not None else 0
            wanted = replace(current, canary=address, canary_units=units)
        if self._install(wanted):
            self._log.info("router.backend_moved", arm=arm, address=str(address))

    # --- internals ------------------------------------------------------------------------

    def _load(self) -> Upstream:
        try:
            text = self.include_file.read_text()
        except OSError as exc:
            raise RouterError(f"cannot read nginx include file {self.include_file}: {exc}") from exc
        upstream = parse_upstream(text, str(self.include_file))
        if upstream.name != self.upstream:
            raise RouterError(
                f"{self.include_file} defines upstream {upstream.name!r}, not {self.upstream!r}"
            )
        return upstream

    def _install(self, upstream: Upstream) -> bool:
        """Write, validate and reload; on any failure put the previous file back.

        Returns False when nginx already runs this exact content (nothing was done).
        """
        content = upstream.render()
        try:
            previous = read_optional(self.include_file)
        except OSError as exc:
            raise RouterError(f"cannot read nginx include file {self.include_file}: {exc}") from exc
        if previous == content and self._live == content:
            return False
        self._write(content)
        try:
            self._nginx_run(["-t"], "nginx -t")
            self._reload()
        except RouterError as exc:
            self._restore(previous, exc)
            raise
        self._live = content
        return True

    def _restore(self, previous: str | None, cause: RouterError) -> None:
        try:
            if previous is None:
                self.include_file.unlink(missing_ok=True)
            else:
                self._write(previous)
        except RouterError as exc:
            cause.add_note(f"and the previous {self.include_file} could not be restored: {exc}")
            return
        self._log.warning("router.change_undone", file=str(self.include_file), cause=str(cause))

    def _write(self, content: str) -> None:
        try:
            replace_file(self.include_file, content)
        except OSError as exc:
            raise RouterError(f"cannot write {self.include_file}: {exc}") from exc

    def _nginx_run(self, args: list[str], what: str) -> str:
        argv = [*self._nginx, *args]
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=self.timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RouterError(f"{what} could not run: {exc}") from exc
        if done.returncode != 0:
            message = " ".join(done.stderr.split()) or f"exit status {done.returncode}"
            raise RouterError(f"{what} failed: {message}")
        return done.stdout + done.stderr

    def _reload(self) -> None:
        """``nginx -s reload``, returning once the old workers stop taking requests.

        The signal only asks the master to reload. It starts new workers, waits 100 ms, then
        tells the old ones to finish; until then they keep serving kept-alive connections
        with the old weights. Where Linux lists the master's children in /proc, the router
        waits until every worker from before the reload has gone or says it "is shutting
        down": when ``apply`` returns, new requests see the new weights, which is what the
        analysis assumes about a step.
        """
        pid = self._master_pid()
        before = _children(pid)
        self._nginx_run(["-s", "reload"], "nginx -s reload")
        if before is None:
            return
        deadline = time.monotonic() + self.timeout
        while True:
            now = _children(pid)
            if now is None or (now - before and all(_retired(old) for old in before)):
                return
            if time.monotonic() > deadline:
                raise RouterError(
                    f"nginx (pid {pid}) did not replace its workers within {self.timeout:g}s "
                    "of the reload: it kept the previous configuration (see nginx's error log)"
                )
            time.sleep(_POLL_INTERVAL)

    def _master_pid(self) -> int:
        """The running master's pid, from its pid file; RouterError when none runs."""
        if self._pid_path is None:
            self._pid_path = self._pid_file(self._nginx_run(["-T"], "nginx -T"))
        try:
            text = self._pid_path.read_text().strip()
        except OSError as exc:
            raise RouterError(f"nginx is not running: no pid file {self._pid_path}") from exc
        if not text.isdigit():
            # `nginx -t` leaves an empty pid file behind when no master runs.
            raise RouterError(f"nginx is not running: no pid in {self._pid_path}")
        pid = int(text)
        try:
            os.kill(pid, 0)
        except PermissionError:
            return pid  # the master runs as another user: it exists
        except OSError as exc:
            raise RouterError(f"nginx is not running: pid {pid} is gone") from exc
        return pid

    def _pid_file(self, dump: str) -> Path:
        """Where the master's pid is: the ``pid`` directive, else nginx's built-in path."""
        match = _PID_DIRECTIVE.search(dump)
        built = ""
        if match is not None:
            path = Path(match[1])
        else:
            built = self._nginx_run(["-V"], "nginx -V")
            found = re.search(r"--pid-path=(\S+)", built)
            path = Path(found[1]) if found else Path("logs/nginx.pid")
        if path.is_absolute():
            return path
        prefix = self._prefix
        if prefix is None:
            built = built or self._nginx_run(["-V"], "nginx -V")
            found = re.search(r"--prefix=(\S+)", built)
            prefix = found[1] if found else "/usr/local/nginx"
        return Path(prefix) / path


def _retired(pid: int) -> bool:
    """Whether an nginx worker has exited or was told to finish ("is shutting down")."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return not title or b"shutting down" in title


def _children(pid: int) -> set[int] | None:
    """Child pids of ``pid`` from /proc, or None where the kernel does not list them."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return None
    return {int(child) for child in text.split()}


def weights_of(upstream: Upstream) -> Weights:
    """The percentages an upstream's units amount to (RouterError if both arms are 0)."""
    try:
        return upstream.weights()
    except ValueError as exc:
        raise RouterError(f"upstream {upstream.name!r}: {exc}") from exc
