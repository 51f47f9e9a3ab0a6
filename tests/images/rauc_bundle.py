"""A whole-system update bundle of the built image: Debian's RAUC builds and verifies it.

Not part of `make test` (needs `make image`; squashing the 1.2 GB slot takes a minute or two);
run by `make image-test`. What it proves is limited to the artifact: `images/rauc/bundle.sh` makes
a signed `verity` bundle of slot A cut from the built image; `rauc info` with the release CA's
keyring accepts it and describes exactly that slot; another CA's keyring refuses it. Installing it
and the boot switch are designed only (images/README.md, "Whole-system A/B update with RAUC").
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.commands.rauc_system import make_ca
from tests.images import harness, qemu

pytestmark = pytest.mark.timeout(900)


def slot_a_sha256() -> str:
    part = qemu.partitions(qemu.IMAGE)[1]
    digest = hashlib.sha256()
    with qemu.IMAGE.open("rb") as image:
        image.seek(part["start"] * 512)
        left = part["size"] * 512
        while left:
            chunk = image.read(min(left, 1 << 22))
            assert chunk, "image shorter than its partition table says"
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def test_signed_bundle_of_slot_a_verifies_with_the_release_keyring_only(tmp_path: Path) -> None:
    qemu.require_tools()
    if shutil.which("rauc") is None or shutil.which("mksquashfs") is None:
        raise RuntimeError("rauc and squashfs-tools are needed: run images/host-setup.sh")
    make_ca(tmp_path / "release", "batigate")
    make_ca(tmp_path / "foreign", "foreign")
    bundle = tmp_path / "update.raucb"
    release = tmp_path / "release"
    built = subprocess.run([str(harness.IMAGES / "rauc/bundle.sh"), str(qemu.IMAGE),
                            str(release / "signer.pem"), str(release / "signer.key"),
                            str(bundle), "1.2.3-test"],
                           capture_output=True, text=True, timeout=800)
    assert built.returncode == 0, built.stdout + built.stderr

    info = subprocess.run(["rauc", "info", "--keyring", str(release / "ca.pem"),
                           "--output-format=json", str(bundle)],
                          capture_output=True, text=True, timeout=120)
    assert info.returncode == 0, info.stdout + info.stderr
    manifest = json.loads(info.stdout)
    assert manifest["compatible"] == "batigate-pi-arm64"
    assert manifest["version"] == "1.2.3-test"
    [image] = manifest["images"]
    assert image["rootfs"]["filename"] == "rootfs.ext4"
    assert image["rootfs"]["checksum"] == slot_a_sha256()

    foreign = subprocess.run(["rauc", "info", "--keyring",
                              str(tmp_path / "foreign" / "ca.pem"), str(bundle)],
                             capture_output=True, text=True, timeout=120)
    assert foreign.returncode != 0
    assert "signature" in (foreign.stdout + foreign.stderr).lower(), foreign.stderr
