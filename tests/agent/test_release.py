"""`batigate release build|verify` (agent/lifecycle/release.py): the bundle a gateway accepts, checked with
the gateway's own checks (update.verify_release, update.unpack) and by the CLI as a subprocess.
The install of such a bundle through a real agent and broker is in
tests/commands/test_update_install.py."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.lifecycle import release

from agent.commands import signing

from agent.lifecycle import update
from tests.agent.test_update import release_wheels, wheel

BATIGATE = Path(sys.executable).with_name("batigate")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BATIGATE), "release", *args], capture_output=True, text=True,
                          timeout=60)


def test_build_with_a_new_key_then_verify_through_the_cli(tmp_path: Path) -> None:
    wheels = release_wheels("2.1.0", tmp_path / "wheels")
    (wheels / "MANIFEST").write_text("what wheels.sh lists\n")  # not a wheel: left out
    key = tmp_path / "keys" / "release.key"
    key.parent.mkdir()
    ran = cli("build", str(wheels), "--key", str(key), "--new-key", "--out",
              str(tmp_path / "dist"), "--url", "https://files.example.org/b.tgz", "--json")
    assert ran.returncode == 0, ran.stderr
    out = json.loads(ran.stdout)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    pub = signing.load_public_key(key.with_name("release.key.pub"))
    bundle = Path(out["bundle"])
    data = bundle.read_bytes()
    assert out["sha256"] == hashlib.sha256(data).hexdigest() and out["size"] == len(data)
    args = out["update_install"]
    assert args == {"url": "https://files.example.org/b.tgz", "sha256": out["sha256"],
                    "size": len(data), "version": "2.1.0", "sig": args["sig"], "kind": "agent"}
    update.verify_release(args["sha256"], args["sig"], pub)  # the gateway's own check
    sidecar = (tmp_path / "dist" / "batigate-2.1.0.tar.gz.sha256").read_text()
    assert sidecar == f"{out['sha256']}  batigate-2.1.0.tar.gz\n"
    assert (tmp_path / "dist" / "batigate-2.1.0.tar.gz.sig").read_text().strip() == args["sig"]
    with tarfile.open(bundle) as tar:
        assert sorted(tar.getnames()) == ["release/batigate-2.1.0-py3-none-any.whl",
                                          "release/fakedep-1.0-py3-none-any.whl"]
    ok = cli("verify", str(bundle), "--pub", str(key) + ".pub")
    assert ok.returncode == 0 and "OK (batigate 2.1.0, 2 wheels" in ok.stdout, ok.stderr
    # Never overwrites a key; the same wheels and key give the same bytes (reproducible).
    again = cli("build", str(wheels), "--key", str(key), "--new-key", "--out", str(tmp_path))
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr
    rebuilt = cli("build", str(wheels), "--key", str(key), "--out", str(tmp_path / "d2"), "--json")
    assert json.loads(rebuilt.stdout)["sha256"] == out["sha256"]


async def test_the_bundle_unpacks_with_the_gateways_unpacker(tmp_path: Path) -> None:
    built = release.build(release_wheels("2.1.0", tmp_path / "w"), tmp_path / "dist",
                          Ed25519PrivateKey.generate())
    (tmp_path / "out").mkdir()
    assert sorted(await update.unpack(built.bundle, tmp_path / "out")) == [
        "batigate-2.1.0-py3-none-any.whl", "fakedep-1.0-py3-none-any.whl"]


def test_verify_names_what_is_wrong(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    built = release.build(release_wheels("2.1.0", tmp_path / "w"), tmp_path / "dist", key)
    good = built.bundle.read_bytes()
    assert release.verify(built.bundle, key.public_key())["version"] == "2.1.0"
    with pytest.raises(release.ReleaseError, match="does not verify with this release key"):
        release.verify(built.bundle, Ed25519PrivateKey.generate().public_key())
    built.bundle.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(release.ReleaseError, match="is not the manifest's"):
        release.verify(built.bundle, key.public_key())
    # A bundle re-signed by the right key but holding something else than wheels.
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        info = tarfile.TarInfo("release/run.sh")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    evil = raw.getvalue()
    built.bundle.write_bytes(evil)
    doc = json.loads(built.manifest.read_text())
    digest = hashlib.sha256(evil).hexdigest()
    doc.update(size=len(evil), sha256=digest, sig=release.sign_digest(key, digest))
    built.manifest.write_text(json.dumps(doc))
    with pytest.raises(release.ReleaseError, match="only wheels"):
        release.verify(built.bundle, key.public_key())
    built.manifest.write_text("[1]")
    with pytest.raises(release.ReleaseError, match="not a release manifest"):
        release.verify(built.bundle, key.public_key())


def test_build_refuses_bad_inputs(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    with pytest.raises(release.ReleaseError, match="holds no .whl"):
        release.build(tmp_path, tmp_path / "d", key)
    wheels = release_wheels("2.1.0", tmp_path / "w")
    with pytest.raises(release.ReleaseError, match="--version 3.0 but the batigate wheel is 2.1.0"):
        release.build(wheels, tmp_path / "d", key, version="3.0")
    name, data = wheel("batigate", "2.2.0", {"x.py": ""})
    (wheels / name).write_bytes(data)
    with pytest.raises(release.ReleaseError, match="exactly one batigate wheel, not 2"):
        release.build(wheels, tmp_path / "d", key)
    loose = tmp_path / "loose.key"
    release.generate_key(loose)
    os.chmod(loose, 0o644)
    with pytest.raises(release.ReleaseError, match="chmod 600"):
        release.load_private_key(loose)
    ran = cli("build", str(wheels), "--key", str(tmp_path / "none.key"))
    assert ran.returncode == 2 and "none.key: cannot read the key" in ran.stderr
