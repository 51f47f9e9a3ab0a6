"""The Node.js packages some interop tests run against, installed by their own script."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def install(script: Path, needed_for: str) -> None:
    """Run `script` (it installs a pinned package, or does nothing when it is there); a missing
    Node.js or a failed install fails the test, never skips it."""
    if shutil.which("node") is None:
        pytest.fail(f"Node.js is needed for {needed_for}")
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=900,
                          check=False)
    if done.returncode != 0:
        pytest.fail(f"{script.name} failed:\n{done.stderr[-3000:]}")
