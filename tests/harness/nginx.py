"""A real nginx in a folder of its own: prefix, pid, logs and every temp path inside it.

``nginx_factory`` starts one per call (``daemon off;`` so the harness owns the master and its
workers as one process group); ``nginx`` is the common case: upstream ``app`` in
``upstream.conf`` with only the blue backend as champion, in the format the router writes,
so tests go through the router's own ``set_backend`` to add a canary. ``conf.d/*.conf`` is
included too, for tests that need to break the configuration on purpose.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.harness.proc import ManagedProcess, free_port, http_ok, require_binary

if TYPE_CHECKING:
    from tests.harness.backends import BackendPair

# The blue and green name backends the default fixture puts behind the proxy.
pytest_plugins = ["tests.harness.backends"]


@dataclass(frozen=True)
class NginxInstance:
    url: str
    binary: str
    prefix: Path
    conf: Path
    include_file: Path
    upstream: str
    process: ManagedProcess

    @property
    def conf_d(self) -> Path:
        return self.prefix / "conf.d"


def _config(prefix: Path, port: int, upstream: str) -> str:
    temp = "\n".join(
        f"    {kind}_temp_path {prefix}/tmp/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""\
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log notice;

events {{
    worker_connections 1024;
}}

http {{
    access_log off;
{temp}
    include {prefix}/upstream.conf;
    include {prefix}/conf.d/*.conf;

    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def start_nginx(prefix: Path, champion: str, *, upstream: str = "app") -> NginxInstance:
    """Start nginx with ``upstream`` holding ``champion`` (host:port); wait until it serves."""
    binary = require_binary("nginx")
    port = free_port()
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    (prefix / "conf.d").mkdir(exist_ok=True)
    include_file = prefix / "upstream.conf"
    include_file.write_text(
        f"upstream {upstream} {{\n    server {champion} weight=1;  # canary:champion\n}}\n"
    )
    conf = prefix / "nginx.conf"
    conf.write_text(_config(prefix, port, upstream))
    process = ManagedProcess(
        name="nginx",
        argv=[binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
        workdir=prefix,
    ).start()
    instance = NginxInstance(
        url=f"http://127.0.0.1:{port}/",
        binary=binary,
        prefix=prefix,
        conf=conf,
        include_file=include_file,
        upstream=upstream,
        process=process,
    )
    try:
        process.wait_ready(lambda: http_ok(instance.url), timeout=20)
    except BaseException:
        process.stop()
        raise
    return instance


@pytest.fixture
def nginx_factory(tmp_path: Path) -> Iterator[Callable[..., NginxInstance]]:
    """Start nginx instances on demand; every one is stopped after the test."""
    started: list[NginxInstance] = []

    def start(champion: str, **options: str) -> NginxInstance:
        instance = start_nginx(tmp_path / f"nginx{len(started)}", champion, **options)
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.process.stop()


@pytest.fixture
def nginx(nginx_factory: Callable[..., NginxInstance], name_backends: BackendPair) -> NginxInstance:
    """nginx with upstream ``app``: champion → blue, no canary yet."""
    return nginx_factory(name_backends.blue.address)
