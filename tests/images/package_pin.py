"""PACKAGES_PIN: a root file system built from a package manifest has exactly its versions.

Not part of `make test` (two root file system builds, ~1.5 min); run by `make image-test`. It uses
the amd64 `nspawn` profile (same rootfs.sh and customize.sh as the Pi image, no emulation):

- a manifest with older versions that the configured suites still serve (bookworm main next to
  the newer ones of bookworm-security/-updates) installs those older versions, the whole set
  equal to the manifest;
- a manifest naming a version the mirror no longer serves fails the build with the difference.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.images import harness

pytestmark = pytest.mark.timeout(900)


def build(tmp_path: Path, name: str, pin: Path) -> tuple[int, str, Path]:
    out = tmp_path / name
    result = subprocess.run([str(harness.IMAGES / "rootfs.sh"), "nspawn",
                             str(harness.wheels("x86_64")), str(out)],
                            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PACKAGES_PIN": str(pin)},
                            capture_output=True, text=True, timeout=600)
    return result.returncode, result.stdout + result.stderr, out


def older_version(package: str) -> str | None:
    """A version of `package` older than the candidate that the host's apt still sees."""
    madison = subprocess.run(["apt-cache", "madison", package], capture_output=True, text=True,
                             timeout=60).stdout
    versions = [line.split("|")[1].strip() for line in madison.splitlines()]
    return versions[-1] if len(set(versions)) > 1 else None


def test_manifest_versions_are_installed_and_a_vanished_one_fails(tmp_path: Path) -> None:
    harness.require_tools()
    reference = harness.rootfs("nspawn", "x86_64") / "opt/batigate/packages.txt"
    manifest = dict(line.split("=", 1) for line in reference.read_text().splitlines())
    # packages with no strict same-version sibling in the set (tzdata; libssl3 beside openssl)
    downgrades = {name: old for name in ("tzdata", "libssl3")
                  if name in manifest and (old := older_version(name)) and old != manifest[name]}
    assert downgrades, "no package of the set has an older version on the mirror to pin"
    pinned = {**manifest, **downgrades}
    pin = tmp_path / "pin.txt"
    pin.write_text("".join(f"{name}={version}\n" for name, version in sorted(pinned.items())))
    code, log, root = build(tmp_path, "pinned", pin)
    assert code == 0, log[-3000:]
    installed = (root / "opt/batigate/packages.txt").read_text().splitlines()
    assert dict(line.split("=", 1) for line in installed) == pinned
    assert not (root / "etc/apt/preferences.d/batigate-pin").exists()  # not left in the image

    gone = dict(pinned, less="1.0-0~vanished")
    pin.write_text("".join(f"{name}={version}\n" for name, version in sorted(gone.items())))
    code, log, _ = build(tmp_path, "vanished", pin)
    assert code != 0
    assert "-less=1.0-0~vanished" in log and re.search(r"\+less=\S+", log), log[-3000:]
    assert "differ from PACKAGES_PIN" in log
