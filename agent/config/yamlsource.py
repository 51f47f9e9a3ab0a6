"""YAML with line numbers, so that every config error can say FILE:LINE; and bounded, so that no
file or command payload can exhaust the agent while it is being read.

Two attacks are refused before any Python object is built:
- an alias bomb ("billion laughs"): a few hundred bytes whose aliases expand to billions of nodes.
  The composed graph is measured with each alias counted at its full expanded size (memoized, so
  the measure is linear in the file), and aliases may add at most MAX_ALIAS_EXPANSION nodes;
- deep nesting: PyYAML composes recursively, so 3,000 nested lists end in RecursionError. The
  composer counts its depth and stops at MAX_DEPTH with a marked error.
Both raise `YAMLBoundError`, a `yaml.YAMLError` with a `problem_mark`, so callers report it as
FILE:LINE like any syntax error.
"""

from __future__ import annotations

from typing import Any

import yaml

Path_ = tuple[str | int, ...]

MAX_DEPTH = 64  # a gateway config nests about 6 levels; profiles a few more
MAX_ALIAS_EXPANSION = 50_000  # nodes that aliases may add beyond those written in the file


class YAMLBoundError(yaml.MarkedYAMLError):
    """The document is over a bound (depth, alias expansion, alias cycle)."""


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose composer refuses nesting deeper than MAX_DEPTH."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                event = self.peek_event()
                raise YAMLBoundError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                                     event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _check_expansion(root: yaml.Node) -> None:
    """Refuse alias cycles and documents whose aliases expand past MAX_ALIAS_EXPANSION nodes."""
    expanded: dict[int, int] = {}  # id(node) -> nodes in its full expansion
    distinct: set[int] = set()
    in_progress: set[int] = set()

    def size(node: yaml.Node, depth: int) -> int:
        key = id(node)
        if key in expanded:
            return expanded[key]
        if key in in_progress:
            raise YAMLBoundError(None, None, "an alias refers to a node that contains it",
                                 node.start_mark)
        if depth > 2 * MAX_DEPTH:  # an anchored subtree aliased inside another deep one
            raise YAMLBoundError(None, None, f"aliases nest deeper than {2 * MAX_DEPTH} levels",
                                 node.start_mark)
        distinct.add(key)
        total = 1
        if isinstance(node, yaml.CollectionNode):
            in_progress.add(key)
            children = (node.value if isinstance(node, yaml.SequenceNode)
                        else [part for pair in node.value for part in pair])
            for child in children:
                total += size(child, depth + 1)
                if total > len(distinct) + MAX_ALIAS_EXPANSION:
                    raise YAMLBoundError(
                        None, None, f"aliases expand the document past "
                        f"{MAX_ALIAS_EXPANSION} extra nodes (an alias bomb?)", child.start_mark)
            in_progress.discard(key)
        expanded[key] = total
        return total

    size(root, 0)


def load_bounded(text: str) -> tuple[Any, yaml.Node | None]:
    """Parse one YAML document within the bounds; return (data, node graph)."""
    loader = BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        _check_expansion(node)
        return loader.construct_document(node), node
    finally:
        loader.dispose()


def safe_load(text: str) -> Any:
    """`yaml.safe_load` within the bounds (profiles, scenarios: every YAML the agent reads)."""
    return load_bounded(text)[0]


def load_with_lines(text: str) -> tuple[Any, dict[Path_, int]]:
    """Parse `text`; return the data and a map from key paths to 1-based line numbers."""
    data, node = load_bounded(text)
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
