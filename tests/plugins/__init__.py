"""Install a third-party plugin (a rule type or a driver) the way pip would: a module on the path
and a `*.dist-info` whose `entry_points.txt` registers it, so `agent.sdk.registry` finds it like ours."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agent.sdk import registry


@contextmanager
def installed(root: Path, *, dist: str, group: str, entries: dict[str, str],
              modules: dict[str, str], files: dict[str, str] | None = None) -> Iterator[None]:
    """`entries`: name -> "module:Class"; `modules`: module name -> its source; `files`: more
    files by path under the site (a package with its data: `pkg/__init__.py`, `pkg/x.yaml`)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))
    for relative, content in (files or {}).items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(textwrap.dedent(content))
    packages = {Path(relative).parts[0] for relative in files or {} if "/" in relative}
    info = root / f"{dist}-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entries.items())
    (info / "entry_points.txt").write_text(f"[{group}]\n{lines}")
    sys.path.insert(0, str(root))
    _forget()
    try:
        yield
    finally:
        sys.path.remove(str(root))
        for name in [*modules, *packages]:
            sys.modules.pop(name, None)
        _forget()


def _forget() -> None:
    """The registry caches what it found; a test that installs or removes a plugin resets it."""
    registry.forget()
