"""Reading a sweep spec's YAML: the safe loader, duplicate keys and unsafe tags by field path.

YAML is read with ruamel.yaml's safe loader (YAML 1.2, so ``1e-3`` is a number; no Python
tags). Duplicate keys are errors, reported with their field paths, never resolved silently.
"""

from __future__ import annotations

from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode
from ruamel.yaml.nodes import Node
from ruamel.yaml.nodes import SequenceNode

from sweeps.errors import SpecError


def read_yaml(text: str, source: str = "<spec>") -> Any:
    """Decode YAML text with the safe loader, refusing duplicate keys.

    Raises:
        SpecError: a syntax error, duplicate keys (all of them, by field path) or an unsafe
            tag (with the field it is on).
    """
    yaml = YAML(typ="safe", pure=True)
    try:
        root = yaml.compose(text)
    except YAMLError as err:
        raise SpecError(source, [("(yaml)", _one_line(err))]) from None
    duplicates = _duplicate_keys(root, "") if root is not None else []
    if duplicates:
        raise SpecError(source, duplicates)
    try:
        return yaml.load(text)
    except YAMLError as err:
        mark = getattr(err, "problem_mark", None) if isinstance(err, MarkedYAMLError) else None
        where = _path_at(root, mark.line, mark.column, "") if mark and root else None
        raise SpecError(source, [(where or "(yaml)", _one_line(err))]) from None


def _one_line(err: YAMLError) -> str:
    """``context problem (line L, column C)`` of a YAML error, on one line."""
    if not isinstance(err, MarkedYAMLError) or err.problem is None:
        return " ".join(str(err).split())
    mark = err.problem_mark
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
    return " ".join(p for p in (err.context, err.problem) if p) + where


def _child_paths(node: Node, path: str) -> list[tuple[str, Node, Node | None]]:
    """(path, value node, key node) of each child of a mapping or sequence node."""
    if isinstance(node, MappingNode):
        return [(f"{path}.{k.value}" if path else str(k.value), v, k) for k, v in node.value]
    if isinstance(node, SequenceNode):
        return [(f"{path}[{i}]", v, None) for i, v in enumerate(node.value)]
    return []


def _duplicate_keys(node: Node, path: str) -> list[tuple[str, str]]:
    """Every key that appears twice in one mapping, as (field path, reason)."""
    out, seen = [], {}
    for child, value, key in _child_paths(node, path):
        if key is not None:
            line = key.start_mark.line + 1
            if child in seen:
                out.append((child, f"duplicate key (lines {seen[child]} and {line}); each key "
                                   "may appear once"))
            seen.setdefault(child, line)
        out += _duplicate_keys(value, child)
    return out


def _path_at(node: Node, line: int, column: int, path: str) -> str | None:
    """The field path of the deepest node starting at (line, column), 0-based."""
    for child, value, _ in _child_paths(node, path):
        if (value.start_mark.line, value.start_mark.column) == (line, column):
            return child
        deeper = _path_at(value, line, column, child)
        if deeper:
            return deeper
    return None
