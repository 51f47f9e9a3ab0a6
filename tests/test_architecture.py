"""The shape of the house, checked: no import cycles, and each layer imports only what it may.

Every import statement counts, wherever it is (a function body, `if TYPE_CHECKING:`): a lazy
import hides a cycle from the interpreter, not from the reader. A package's `__init__` importing
its own submodules is its face, not a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agent", "drivers", "rules", "provisioning")
SDK_SURFACE = ("agent.sdk", "agent.i18n")  # what drivers, rules and provisioning may use of agent


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules that `name` imports (the longest known prefix of each target)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: {t for t in imports(name, path, known)
                   if not (path.name == "__init__.py" and t.startswith(name + "."))}
            for name, path in known.items()}


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the groups of modules that import each other in a circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    cycles = strongly_connected(graph())
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("layer", ["drivers", "rules", "provisioning", "agent.sdk"])
def test_a_layer_imports_only_the_sdk_of_agent(layer: str) -> None:
    """Drivers and rules are plugins: they see `agent.sdk` only, so the runtime can change under
    them. `provisioning/` (the gateway's identity) depends on cryptography and the SDK only."""
    outside = sorted(
        f"{name} imports {target}"
        for name, targets in graph().items() if name == layer or name.startswith(layer + ".")
        for target in targets
        if target.startswith("agent") and not target.startswith(SDK_SURFACE))
    assert not outside, "\n".join(outside)


def test_agent_is_grouped_in_packages() -> None:
    flat = sorted(p.name for p in (ROOT / "agent").glob("*.py"))
    assert flat == ["__init__.py", "__main__.py"], flat
