"""Reading a Dockerfile and a .dockerignore the way ``docker build`` does, for the tests.

There is no container engine where the tests run, so the Dockerfile is checked by reading
it: its instructions (continuation lines joined, ``ARG`` defaults and ``ENV`` values
substituted), its stages, and the files its ``.dockerignore`` lets into the build context.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


@dataclass
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    arguments: str  # the rest of the instruction, continuation lines joined

    def exec_form(self) -> list[str] | None:
        """The JSON array form (``["canary", "run"]``), or None for the shell form."""
        text = self.arguments.strip()
        if text.startswith("["):
            value = json.loads(text)
            assert isinstance(value, list)
            return [str(v) for v in value]
        return None


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        """``ENV`` values of the stage (``KEY=value`` pairs, later ones win)."""
        out: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for pair in shlex.split(instruction.arguments):
                key, _, value = pair.partition("=")
                out[key] = value
        return out


def instructions(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile, comments dropped and ``\\`` continuations joined."""
    out: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        line = pending + stripped
        pending = ""
        keyword, _, arguments = line.partition(" ")
        out.append(Instruction(keyword.upper(), arguments.strip()))
    return out


def substitute(text: str, values: dict[str, str]) -> str:
    """``${NAME}`` and ``$NAME`` replaced by their values (unknown names left alone)."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return values.get(name, match.group(0))

    return _VARIABLE.sub(one, text)


def stages(text: str) -> list[Stage]:
    """The build stages, with ``ARG`` defaults (global and per stage) substituted."""
    args: dict[str, str] = {}
    out: list[Stage] = []
    for instruction in instructions(text):
        if instruction.keyword == "ARG":
            name, _, default = instruction.arguments.partition("=")
            args[name.strip()] = default.strip().strip('"')
            if out:
                out[-1].instructions.append(instruction)
            continue
        arguments = substitute(instruction.arguments, args)
        if instruction.keyword == "FROM":
            parts = arguments.split()
            alias = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            out.append(Stage(base=parts[0], name=alias))
            continue
        out[-1].instructions.append(Instruction(instruction.keyword, arguments))
    return out


def _pattern(pattern: str) -> re.Pattern[str]:
    parts = []
    for segment in pattern.strip("/").split("/"):
        if segment == "**":
            parts.append(".*")
        else:
            regex = "".join(
                "[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c) for c in segment
            )
            parts.append(regex)
    return re.compile("/".join(parts).replace(".*/", "(?:.*/)?"))


def context_files(root: Path, dockerignore: str) -> list[str]:
    """Files of ``root`` that the ``.dockerignore`` lets into the build context.

    Docker's rules: the last pattern that matches a path or one of its parent folders
    decides, and a ``!`` pattern lets the path back in. A folder that is excluded and that no
    ``!`` pattern reaches into is not walked (the virtualenv, the git history).
    """
    rules = []
    for raw in dockerignore.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        rules.append((negate, line.lstrip("!").strip("/"), _pattern(line.lstrip("!"))))

    def excluded(relative: str) -> bool:
        parts = relative.split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        result = False
        for negate, _, regex in rules:
            if any(regex.fullmatch(c) for c in candidates):
                result = not negate
        return result

    def may_reinclude(folder: str) -> bool:
        return any(
            negate and ("**" in text or text.startswith(folder + "/") or text == folder)
            for negate, text, _ in rules
        )

    kept = []
    for current, folders, files in os.walk(root):
        base = Path(current).relative_to(root).as_posix()
        prefix = "" if base == "." else base + "/"
        folders[:] = sorted(
            f for f in folders if not excluded(prefix + f) or may_reinclude(prefix + f)
        )
        kept += [prefix + f for f in sorted(files) if not excluded(prefix + f)]
    return sorted(kept)
