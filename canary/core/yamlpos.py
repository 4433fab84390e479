"""YAML loading that remembers where every key and value came from.

Policy errors must name the file, line and column of the offending field, which plain
``yaml.safe_load`` forgets. We compose the node tree once, build Python values from it
ourselves (rejecting duplicate keys, which PyYAML silently accepts and which hide mistakes),
and keep a map from each path (``("analysis", "metrics", 0, "name")``) to its position.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Position:
    """1-based line and column in the source text."""

    line: int
    column: int


@dataclass
class LocatedDocument:
    """A loaded YAML document and where each path of it is in the source."""

    value: Any
    values: dict[Path, Position] = field(default_factory=dict)
    keys: dict[Path, Position] = field(default_factory=dict)
    mappings: set[Path] = field(default_factory=set)
    sequences: dict[Path, int] = field(default_factory=dict)

    def position(self, path: Path, *, key: bool = False) -> Position:
        """Where ``path`` is; for a path that is not in the document, its nearest parent."""
        while True:
            table = self.keys if key and path in self.keys else self.values
            if path in table:
                return table[path]
            if not path:
                return Position(1, 1)
            path = path[:-1]

    def has(self, path: Path) -> bool:
        return path in self.values


class YAMLLocatedError(ValueError):
    """A YAML syntax or structure error, with the position it was found at."""

    def __init__(self, message: str, position: Position) -> None:
        self.position = position
        super().__init__(message)


def load_located(text: str) -> LocatedDocument:
    """Parse one YAML document; raise YAMLLocatedError with a line and column on failure."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        position = Position(mark.line + 1, mark.column + 1) if mark else Position(1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        raise YAMLLocatedError(f"YAML syntax error: {problem}", position) from None
    except yaml.reader.ReaderError as exc:
        # A character YAML forbids (control characters, U+FFFE...): PyYAML's own message is
        # several lines and has no line number, so say which character and where.
        code = exc.character if isinstance(exc.character, int) else ord(exc.character[:1] or "?")
        raise YAMLLocatedError(
            f"YAML error: character {chr(code)!r} (U+{code:04X}) is not allowed in YAML",
            _offset_position(text, exc.position),
        ) from None
    except yaml.YAMLError as exc:
        # One line, whatever PyYAML put in its message: problems are printed one per line.
        raise YAMLLocatedError(
            f"YAML error: {' '.join(str(exc).split())}", Position(1, 1)
        ) from None
    doc = LocatedDocument(value=None)
    if node is None:
        return doc
    doc.value = _build(node, (), doc)
    return doc


def _offset_position(text: str, offset: int) -> Position:
    """The 1-based line and column of a character offset into ``text``."""
    before = text[: max(0, offset)]
    line_start = max(before.rfind("\n"), before.rfind("\r")) + 1
    return Position(before.count("\n") + 1, offset - line_start + 1)


def _mark(node: yaml.Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


def _build(node: yaml.Node, path: Path, doc: LocatedDocument) -> Any:
    doc.values[path] = _mark(node)
    if isinstance(node, yaml.MappingNode):
        doc.mappings.add(path)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise YAMLLocatedError("YAML merge keys (<<) are not supported", _mark(key_node))
            if not isinstance(key_node, yaml.ScalarNode):
                raise YAMLLocatedError("mapping keys must be plain names", _mark(key_node))
            # Keys are names: take them as written, so YAML 1.1 does not turn `on:` into True.
            key = key_node.value
            if key in out:
                raise YAMLLocatedError(f"duplicate key {key!r}", _mark(key_node))
            child: tuple[str | int, ...] = (*path, key)
            doc.keys[child] = _mark(key_node)
            out[key] = _build(value_node, child, doc)
        return out
    if isinstance(node, yaml.SequenceNode):
        doc.sequences[path] = len(node.value)
        return [_build(item, (*path, index), doc) for index, item in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        return [] if isinstance(node, yaml.SequenceNode) else {}
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    except yaml.constructor.ConstructorError as exc:
        raise YAMLLocatedError(f"YAML error: {exc.problem}", _mark(node)) from None
    finally:
        loader.dispose()
