"""Release bundles for `update.install`, the build side (images/README.md, "Updates").

    wheels/ (wheels.sh) ─► batigate-1.5.0.tar.gz        the wheels only, as update.unpack wants
                         ├ batigate-1.5.0.tar.gz.sha256 "HEX  NAME", what sha256sum -c reads
                         ├ batigate-1.5.0.tar.gz.sig    base64 Ed25519 over the sha256 hex text
                         └ batigate-1.5.0.json          manifest: version, size, sha256, sig

The manifest carries everything `update.install` needs but the URL (`install_args`); the release
key signs the same bytes the gateway checks (`update.verify_release`), so a bundle that passes
`verify` here passes there. The tar is reproducible: sorted members, fixed mtime, owner and mode,
so the same wheels give the same sha256.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.commands import signing

from agent.lifecycle import update
from agent.sdk.durable import write_atomic

MANIFEST_FORMAT = 1
MAX_WHEELS = 500  # a release is the agent and its ~30 dependencies; more is a wrong folder
MAX_MANIFEST = 1 << 20
# PEP 427 file name: distribution-version(-build)?-python-abi-platform.whl
WHEEL_NAME = re.compile(
    r"^(?P<dist>[A-Za-z0-9_.]+)-(?P<version>[^-]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$")


class ReleaseError(Exception):
    """The bundle cannot be built or does not verify; the message says which file and why."""


@dataclass(frozen=True)
class Built:
    bundle: Path
    manifest: Path
    doc: dict[str, Any]


# -- keys -------------------------------------------------------------------------------------

def generate_key(private: Path) -> Ed25519PrivateKey:
    """A new Ed25519 key: the private PEM written 0600 (never readable by others, not even for a
    moment) and the public PEM beside it as `<private>.pub`. An existing file is never replaced:
    losing a release key means re-keying every gateway."""
    if private.exists():
        raise ReleaseError(f"{private} exists; refusing to overwrite a key")
    return signing.write_new_key(private)


def public_path(private: Path) -> Path:
    return private.with_name(private.name + ".pub")


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise ReleaseError(f"{path}: cannot read the key: {exc.strerror}") from None
    except (ValueError, TypeError) as exc:
        raise ReleaseError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ReleaseError(f"{path}: the release key must be Ed25519")
    if path.stat().st_mode & 0o077:
        raise ReleaseError(f"{path}: a private key must not be readable by others (chmod 600)")
    return key


def fingerprint(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()[:16]


def sign_digest(key: Ed25519PrivateKey, sha256_hex: str) -> str:
    """What `update.verify_release` checks: Ed25519 over the ASCII hex digest, base64."""
    return base64.b64encode(key.sign(sha256_hex.encode("ascii"))).decode("ascii")


# -- build ------------------------------------------------------------------------------------

def wheels_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise ReleaseError(f"{folder}: not a folder of wheels")
    found = sorted(p for p in folder.iterdir() if p.name.endswith(".whl") and p.is_file())
    if not found:
        raise ReleaseError(f"{folder}: holds no .whl file (make them with images/wheels.sh)")
    if len(found) > MAX_WHEELS:
        raise ReleaseError(f"{folder}: {len(found)} wheels, more than {MAX_WHEELS}")
    for path in found:
        if not update.WHEEL.fullmatch(path.name) or not WHEEL_NAME.match(path.name):
            raise ReleaseError(f"{path.name}: not a wheel file name (PEP 427)")
    return found


def agent_version(wheels: list[Path]) -> str:
    """The version of the one batigate wheel among `wheels`."""
    versions = [m["version"] for p in wheels if (m := WHEEL_NAME.match(p.name))
                and m["dist"].lower().replace(".", "_") == "batigate"]
    if len(versions) != 1:
        raise ReleaseError(f"the wheels must hold exactly one batigate wheel, not {len(versions)}")
    return versions[0]


def tar_gz(wheels: list[Path]) -> bytes:
    """Reproducible: members in name order under release/, mtime 0, root owner, mode 0644, and
    a gzip header without time or name."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in wheels:
            info = tarfile.TarInfo(f"release/{path.name}")
            info.size = path.stat().st_size
            info.mode, info.mtime, info.uid, info.gid = 0o644, 0, 0, 0
            with open(path, "rb") as source:
                tar.addfile(info, source)
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def build(wheel_dir: Path, out_dir: Path, key: Ed25519PrivateKey, *,
          version: str | None = None) -> Built:
    wheels = wheels_in(wheel_dir)
    found = agent_version(wheels)
    if version is not None and version != found:
        raise ReleaseError(f"--version {version} but the batigate wheel is {found}")
    if not re.fullmatch(update.VERSION, found):
        raise ReleaseError(f"version {found!r} is not one update.install accepts")
    data = tar_gz(wheels)
    digest = hashlib.sha256(data).hexdigest()
    name = f"batigate-{found}.tar.gz"
    doc = {
        "format": MANIFEST_FORMAT, "version": found, "file": name, "size": len(data),
        "sha256": digest, "sig": sign_digest(key, digest),
        "key": fingerprint(key.public_key()),
        "wheels": [{"name": p.name, "size": p.stat().st_size,
                    "sha256": hashlib.sha256(p.read_bytes()).hexdigest()} for p in wheels],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    bundle = out_dir / name
    write_atomic(bundle, data, 0o644)
    write_atomic(out_dir / f"{name}.sha256", f"{digest}  {name}\n".encode(), 0o644)
    write_atomic(out_dir / f"{name}.sig", (doc["sig"] + "\n").encode(), 0o644)
    manifest = out_dir / f"batigate-{found}.json"
    write_atomic(manifest, (json.dumps(doc, indent=2) + "\n").encode(), 0o644)
    return Built(bundle, manifest, doc)


# -- verify -----------------------------------------------------------------------------------

def manifest_for(bundle: Path) -> Path:
    """`batigate-1.5.0.tar.gz` -> `batigate-1.5.0.json` beside it."""
    name = bundle.name.removesuffix(".tar.gz")
    return bundle.with_name(name + ".json")


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        if path.stat().st_size > MAX_MANIFEST:
            raise ReleaseError(f"{path}: larger than {MAX_MANIFEST} bytes")
        doc = json.loads(path.read_bytes())
    except OSError as exc:
        raise ReleaseError(f"{path}: cannot read the manifest: {exc.strerror}") from None
    except ValueError as exc:
        raise ReleaseError(f"{path}: not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
        raise ReleaseError(f"{path}: not a release manifest of format {MANIFEST_FORMAT}")
    for field, kind in (("version", str), ("size", int), ("sha256", str), ("sig", str),
                        ("wheels", list)):
        if not isinstance(doc.get(field), kind):
            raise ReleaseError(f"{path}: {field}: missing or not a {kind.__name__}")
    return doc


def verify(bundle: Path, public_key: Ed25519PublicKey, manifest: Path | None = None
           ) -> dict[str, Any]:
    """Everything the gateway will check, and more: size, sha256, release signature, only
    wheels, each wheel's hash as listed, and the batigate wheel of the announced version.
    Returns the manifest; raises ReleaseError naming the first thing that is wrong."""
    manifest = manifest or manifest_for(bundle)
    doc = read_manifest(manifest)
    try:
        data = bundle.read_bytes()
    except OSError as exc:
        raise ReleaseError(f"{bundle}: cannot read: {exc.strerror}") from None
    if len(data) != doc["size"]:
        raise ReleaseError(f"{bundle}: {len(data)} bytes, the manifest says {doc['size']}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != doc["sha256"]:
        raise ReleaseError(f"{bundle}: sha256 {digest} is not the manifest's {doc['sha256']}")
    try:
        update.verify_release(digest, doc["sig"], public_key)
    except update.UpdateError:
        raise ReleaseError(f"{manifest}: sig: does not verify with this release key "
                           f"({fingerprint(public_key)})") from None
    listed = {w.get("name"): w for w in doc["wheels"] if isinstance(w, dict)}
    seen: list[str] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar:
                if member.isdir():
                    continue
                name = PurePosixPath(member.name).name
                source = tar.extractfile(member) if member.isfile() else None
                if source is None or not update.WHEEL.fullmatch(name) or name in seen:
                    raise ReleaseError(f"{bundle}: holds {member.name!r}: only wheels, once each")
                entry = listed.get(name)
                if entry is None or hashlib.sha256(source.read()).hexdigest() != entry.get(
                        "sha256"):
                    raise ReleaseError(f"{bundle}: {name} is not the wheel the manifest lists")
                seen.append(name)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ReleaseError(f"{bundle}: not a readable tar.gz: {exc}") from None
    if sorted(seen) != sorted(listed):
        raise ReleaseError(f"{bundle}: wheels {sorted(seen)} but the manifest lists "
                           f"{sorted(listed)}")
    version = agent_version([Path(n) for n in seen])
    if version != doc["version"]:
        raise ReleaseError(f"{bundle}: the batigate wheel is {version}, the manifest says "
                           f"{doc['version']}")
    return doc


def install_args(doc: dict[str, Any], url: str) -> dict[str, Any]:
    """The `update.install` arguments for this bundle served at `url`."""
    return {"url": url, "sha256": doc["sha256"], "size": doc["size"], "version": doc["version"],
            "sig": doc["sig"], "kind": "agent"}
