"""Hostile text: what an attacker, a careless script or a copy-paste puts in a name.

Each value carries at least one character that means something to a consumer canary feeds:
PromQL (quotes, braces, ``=~``, ``or``), HAProxy's runtime API (``;`` and newlines separate
commands), nginx (``;``, ``{}``, ``#``), file paths (``/``, ``../``, NUL), shells and argv
(spaces, ``$()``, backticks), YAML and JSON (quotes, backslashes, newlines), HTML (``<>``).
Shared by the fuzz tests and the integration tests that push such names at real servers.
"""

from __future__ import annotations

HOSTILE: tuple[str, ...] = (
    'm"} or vector(1) #',
    "m'; drop table rollouts; --",
    'm{version=~".*"}',
    "m\nset weight app/champion 0",
    "m;set server app/canary state ready",
    "m\\x00\\",
    "../../etc/passwd",
    "..",
    "/abs/path",
    "m\x00nul",
    "m\r\nX-Injected: 1",
    "m $(touch pwned) `id`",
    "m<script>alert(1)</script>",
    "m}{",
    "m#comment",
    "-rf",
    " leading-space",
    "trailing-space ",
    "é-unicode",
    "m\u2028line-separator",
    "",
)

# Valid but unusual: every one must keep working end to end.
UNUSUAL_MODEL_NAMES: tuple[str, ...] = ("Fraud.Score-v2_0", "9lives", "a.b.c-d_e.1")
