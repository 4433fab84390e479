"""Replacing a config file that a running proxy reads, without it ever seeing half a file.

nginx (on ``-t`` and reload) and Envoy (on a watched move) read whole files at moments we do
not choose, so a file is never rewritten in place: the new content goes to a temporary file
in the same directory (same filesystem, so the rename is atomic), is flushed to disk, and is
renamed over the old name. Envoy's file watch also needs exactly this: it reloads on a move.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def read_optional(path: Path) -> str | None:
    """The file's text, or None when it does not exist (other errors propagate)."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def replace_file(path: Path, content: str, mode: int = 0o644) -> None:
    """Atomically make ``path`` hold ``content``; raises OSError and leaves ``path`` as it was."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.chmod(mode)
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
