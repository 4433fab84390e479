"""Load policies from YAML and turn every problem into ``file:line:column: field: message``.

Validation errors are only useful if they point at the line to fix. pydantic reports a path
through the model (including the tags of discriminated unions); we walk that path through the
YAML node tree to find the line, drop the union tags from what we print, and for an unknown
key suggest the closest field that exists at that place (``stpes`` -> ``steps``).
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from canary.core.policy import Policy
from canary.core.yamlpos import LocatedDocument, YAMLLocatedError, load_located
from canary.errors import PolicyError

POLICY_SUFFIXES = (".yaml", ".yml")


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Validate a policy from YAML text; raise PolicyError listing every problem."""
    try:
        doc = load_located(text)
    except YAMLLocatedError as exc:
        pos = exc.position
        raise PolicyError([f"{source}:{pos.line}:{pos.column}: {exc}"]) from None
    if not isinstance(doc.value, dict):
        raise PolicyError([f"{source}:1:1: a policy must be a YAML mapping of fields"])
    try:
        return Policy.model_validate(doc.value)
    except ValidationError as exc:
        raise PolicyError(format_errors(exc, doc, source)) from None


def load_policy(path: str | Path) -> Policy:
    """Read and validate one policy file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError([f"{path}:0:0: cannot read policy: {exc}"]) from None
    return parse_policy(text, str(path))


def policy_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand directories to the YAML files they hold (sorted); keep files as given.

    Hidden files and folders are skipped: a Kubernetes ConfigMap volume keeps a second copy
    of every file in a hidden ``..<timestamp>`` folder, and editors leave ``.name.swp``.
    """
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.suffix in POLICY_SUFFIXES
                    and p.is_file()
                    and not any(part.startswith(".") for part in p.relative_to(path).parts)
                )
            )
        else:
            out.append(path)
    return out


# --- error formatting --------------------------------------------------------------------

_UNION_TAGS = {"haproxy", "nginx", "envoy", "ratio", "histogram", "alias", "tag", "new_versions"}


def format_errors(exc: ValidationError, doc: LocatedDocument, source: str) -> list[str]:
    """One ``file:line:col: path: message`` line per pydantic error, in file order."""
    lines: list[tuple[int, int, str]] = []
    for error in exc.errors(include_url=False):
        path, missing = _yaml_path(tuple(error["loc"]), doc)
        kind = error["type"]
        if kind == "union_tag_invalid":
            field = str(error.get("ctx", {}).get("discriminator", "")).strip("'")
            if doc.has((*path, field)):
                path = (*path, field)
        is_key = kind == "extra_forbidden" or "[key]" in error["loc"]
        pos = doc.position(path, key=is_key)
        shown = ".".join(_printable(p) for p in (*path, *missing)) or "(policy)"
        message = _message(error, path, missing)
        lines.append(
            (pos.line, pos.column, f"{source}:{pos.line}:{pos.column}: {shown}: {message}")
        )
    lines.sort(key=lambda item: (item[0], item[1]))
    return [text for _, _, text in lines]


def _yaml_path(loc: tuple[Any, ...], doc: LocatedDocument) -> tuple[tuple[Any, ...], list[Any]]:
    """Split pydantic's loc into the part present in the YAML and the missing tail."""
    path: tuple[Any, ...] = ()
    missing: list[Any] = []
    for part in loc:
        if part == "[key]":
            continue
        candidate = (*path, part)
        if not missing and doc.has(candidate):
            path = candidate
        elif (isinstance(part, str) and part in _UNION_TAGS and not missing) or (
            isinstance(part, str) and part.startswith("function-")
        ):
            continue
        else:
            missing.append(part)
    return path, missing


def _message(error: Any, path: tuple[Any, ...], missing: list[Any]) -> str:
    kind = error["type"]
    msg = str(error["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if msg.startswith("Assertion failed, "):
        msg = msg[len("Assertion failed, ") :]
    if kind == "extra_forbidden":
        key = str(path[-1]) if path else ""
        known = _known_fields(path[:-1])
        close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean `{close[0]}`?" if close else ""
        options = f" (known: {', '.join(sorted(known))})" if known and not close else ""
        return f"unknown field `{_printable(key)}`{hint}{options}"
    if kind == "missing":
        return "required field is missing"
    if kind == "union_tag_invalid":
        ctx = error.get("ctx", {})
        tag = str(ctx.get("tag", ""))
        expected = str(ctx.get("expected_tags", "")).replace("'", "")
        choices = [t.strip() for t in expected.split(",")]
        close = difflib.get_close_matches(tag, choices, n=1, cutoff=0.6)
        hint = f"; did you mean `{close[0]}`?" if close else ""
        field = ctx.get("discriminator", "type").strip("'")
        return f"unknown {field} {tag!r}: expected one of {expected}{hint}"
    if kind == "union_tag_not_found":
        field = str(error.get("ctx", {}).get("discriminator", "type")).strip("'")
        return f"required field `{field}` is missing (it says which kind this is)"
    return msg


def _printable(part: Any) -> str:
    """A path part as printed: as written when it is a plain name, repr-escaped otherwise, so
    a key holding a newline or a control character cannot break the one-line format."""
    text = str(part)
    return text if text.isprintable() and text.strip() == text and text else repr(text)


def _known_fields(path: tuple[Any, ...]) -> set[str]:
    """Field names that are valid at ``path`` in the policy model (for suggestions)."""
    current: list[Any] = [Policy]
    for part in path:
        following: list[Any] = []
        for tp in current:
            for option in _options(tp):
                if isinstance(option, type) and issubclass(option, BaseModel):
                    field = option.model_fields.get(str(part))
                    if field is not None:
                        following.append(field.annotation)
                else:
                    origin = typing.get_origin(option)
                    args = typing.get_args(option)
                    if origin is list and isinstance(part, int) and args:
                        following.append(args[0])
                    elif origin is dict and len(args) == 2:
                        following.append(args[1])
        current = following
    names: set[str] = set()
    for tp in current:
        for option in _options(tp):
            if isinstance(option, type) and issubclass(option, BaseModel):
                names.update(option.model_fields)
    return names


def _options(tp: Any) -> list[Any]:
    """The concrete types behind Annotated/Optional/Union wrappers."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _options(typing.get_args(tp)[0])
    if origin is typing.Union or origin is types.UnionType:
        out: list[Any] = []
        for arg in typing.get_args(tp):
            out.extend(_options(arg))
        return out
    return [tp]
