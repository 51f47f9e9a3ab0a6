"""YAML with line numbers, so that every config error can say FILE:LINE."""

from __future__ import annotations

from typing import Any

import yaml

Path_ = tuple[str | int, ...]


def load_with_lines(text: str) -> tuple[Any, dict[Path_, int]]:
    """Parse `text`; return the data and a map from key paths to 1-based line numbers."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    data = yaml.safe_load(text)
    lines: dict[Path_, int] = {}
    if node is not None:
        lines[()] = node.start_mark.line + 1
        _walk(node, (), lines)
    return data, lines


def _walk(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[(*path, key)] = key_node.start_mark.line + 1
            _walk(value_node, (*path, key), lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _walk(item, (*path, index), lines)


def line_of(lines: dict[Path_, int], path: Path_) -> int:
    """The line of the deepest part of `path` that exists in the file (1 if nothing does)."""
    for end in range(len(path), -1, -1):
        if (found := lines.get(tuple(path[:end]))) is not None:
            return found
    return 1


def dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top)"
