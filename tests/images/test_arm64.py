"""The units checked by the target's own systemd inside an arm64 root file system (qemu-user),
with the agent installed there from the aarch64 wheels, as the Pi image has it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.images import harness

pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def root() -> Path:
    harness.require_tools()
    subprocess.run([str(harness.IMAGES / "host-setup.sh")], check=True)  # binfmt for aarch64
    return harness.rootfs("verify", "aarch64")


def in_root(root: Path, *args: str) -> str:
    return subprocess.run(["chroot", str(root), "env", "-i", "PATH=/usr/sbin:/usr/bin", *args],
                          check=True, capture_output=True, text=True, timeout=300).stdout


def test_units_verify_cleanly_with_the_target_systemd(root: Path) -> None:
    assert in_root(root, "uname", "-m").strip() == "aarch64"
    # written by customize.sh: systemd-analyze verify exits 0 even on warnings, so read it all
    assert (root / "opt/batigate/verify.txt").read_text() == ""


def test_security_exposure_stays_low(root: Path) -> None:
    report = (root / "opt/batigate/security.txt").read_text()
    score = float(re.search(r"Overall exposure level for batigate.service: ([\d.]+)",
                            report).group(1))
    assert score <= 2.0, report[-2000:]


def test_agent_runs_on_aarch64(root: Path) -> None:
    out = in_root(root, "/opt/batigate/venv/bin/python", "-c",
                  "import platform, cryptography, pydantic_core; print(platform.machine())")
    assert out.strip() == "aarch64"
    assert in_root(root, "/opt/batigate/venv/bin/batigate", "--version").startswith("batigate")
