"""First boot (and every boot): install what a technician dropped on the FAT boot partition.

The technician copies `gateway.yaml` and the certificates it names (say `ca.pem`, `gw.crt`, and
`gw.key` if the key was made elsewhere) to the SD card's FAT partition from any laptop. At boot,
before the agent starts, this module (run as root by `batigate-firstboot.service`):

1. validates `gateway.yaml` exactly like `batigate config check` and every dropped PEM file;
2. when all is valid, moves them into the config directory (atomically, the replaced config kept
   as `gateway.yaml.replaced`), owned by the agent's user, and deletes them from the FAT so no
   secret stays on a partition anyone can read;
3. when anything is invalid, changes nothing: the problems go to the console and the journal and to
   `batigate-errors.txt` beside the file (readable on the technician's laptop), the dropped file is
   renamed `gateway.yaml.rejected`, and the gateway keeps its previous config;
4. generates the gateway's EC P-256 key (mode 0600) and a CSR if the config names a key that does
   not exist, and leaves a copy of the CSR on the FAT for the enrollment.

Exit status: 0 nothing to do or installed, 1 a dropped file was rejected (the unit shows failed).
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.config import loader as config_mod
from agent.sdk.durable import write_atomic
from agent.sdk.errors import ConfigError

CONFIG_NAME = "gateway.yaml"
ERRORS_NAME = "batigate-errors.txt"
STATUS_NAME = "batigate-status.txt"


@dataclass
class Layout:
    drop: Path  # the FAT partition (/boot/firmware on the image)
    config_dir: Path  # /etc/batigate
    uid: int | None = None  # owner of installed files; None: leave as created (tests)
    gid: int | None = None


@dataclass
class Outcome:
    installed: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    key_created: Path | None = None
    csr: Path | None = None


def run(layout: Layout, *, say: Callable[[str], None] = print) -> Outcome:
    outcome = Outcome()
    dropped = layout.drop / CONFIG_NAME
    if dropped.exists():
        _install_drop(layout, dropped, outcome)
    for line in outcome.problems:
        say(f"batigate-firstboot: REJECTED: {line}")
    if outcome.problems:
        say(f"batigate-firstboot: {dropped} was NOT installed; the gateway keeps its previous "
            f"config. Fix the file, copy it again to the boot partition and power-cycle.")
    for path in outcome.installed:
        say(f"batigate-firstboot: installed {path}")
    for line in outcome.warnings:
        say(f"batigate-firstboot: warning: {line}")
    _ensure_key(layout, outcome, say)
    return outcome


def _install_drop(layout: Layout, dropped: Path, outcome: Outcome) -> None:
    text = dropped.read_bytes()
    try:
        cfg = config_mod.parse(text.decode("utf-8", errors="replace"), str(dropped))
    except ConfigError as exc:
        outcome.problems.extend(exc.problems)
        _reject(layout, dropped, outcome.problems)
        return
    # The certificates the config names, found on the FAT by their file name.
    files: dict[Path, bytes] = {}
    tls = cfg.mqtt.tls
    for role, target in (("ca", tls.ca), ("cert", tls.cert), ("key", tls.key)) if tls else ():
        if target is None:
            continue
        target = Path(target)
        if target.parent != layout.config_dir:
            outcome.problems.append(f"{dropped}: mqtt.tls.{role}: {target} must be in "
                                    f"{layout.config_dir} (the only place first boot installs to)")
            continue
        source = layout.drop / target.name
        if not source.exists():
            if target.exists() or role == "key":  # a missing key is generated below
                continue
            if role == "cert":  # normal until the enrollment signed the CSR made below
                outcome.warnings.append(f"{target.name} is not installed yet: the agent cannot "
                                        f"connect before it is (drop it with its config)")
                continue
            outcome.problems.append(f"{dropped}: mqtt.tls.{role}: {target.name} is neither on "
                                    f"the boot partition nor already installed")
            continue
        data = source.read_bytes()
        if problem := _check_pem(role, data):
            outcome.problems.append(f"{source}: {problem}")
        files[target] = data
    if not outcome.problems:
        outcome.problems.extend(_check_pair(files, tls))
    if outcome.problems:
        _reject(layout, dropped, outcome.problems)
        return
    # Everything is valid: certificates first, the config last, so the agent never sees a config
    # whose certificates are not there yet.
    for target, data in files.items():
        _place(layout, target, data, mode=0o600 if target == (tls and tls.key) else 0o640)
        outcome.installed.append(target)
    current = layout.config_dir / CONFIG_NAME
    if current.exists():
        write_atomic(layout.config_dir / (CONFIG_NAME + ".replaced"), current.read_bytes())
    _place(layout, current, text, mode=0o640)
    outcome.installed.append(current)
    for target in files:
        (layout.drop / target.name).unlink()
    dropped.unlink()
    (layout.drop / ERRORS_NAME).unlink(missing_ok=True)
    (layout.drop / STATUS_NAME).write_text(
        f"installed {CONFIG_NAME} (digest {cfg.digest}) and {len(files)} certificate file(s) "
        f"at {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n")


def _check_pem(role: str, data: bytes) -> str | None:
    try:
        if role == "key":
            serialization.load_pem_private_key(data, password=None)
        else:
            if not x509.load_pem_x509_certificates(data):
                return "no certificate in the file"
    except (ValueError, TypeError) as exc:
        what = "a private key without password" if role == "key" else "PEM certificates"
        return f"not {what}: {exc}"
    return None


def _check_pair(files: dict[Path, bytes], tls: object) -> list[str]:
    """A dropped certificate must belong to the key (dropped or already installed)."""
    cert_path = getattr(tls, "cert", None)
    key_path = getattr(tls, "key", None)
    if cert_path is None or key_path is None or Path(cert_path) not in files:
        return []
    key_data = files.get(Path(key_path))
    if key_data is None:
        if not Path(key_path).exists():
            return [f"{Path(cert_path).name}: a certificate was dropped without its key "
                    f"{Path(key_path).name}, and no key is installed"]
        key_data = Path(key_path).read_bytes()
    cert = x509.load_pem_x509_certificates(files[Path(cert_path)])[0]
    key = serialization.load_pem_private_key(key_data, password=None)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if (cert.public_key().public_bytes(serialization.Encoding.DER, spki)
            != key.public_key().public_bytes(serialization.Encoding.DER, spki)):
        return [f"{Path(cert_path).name}: the certificate does not match the key "
                f"{Path(key_path).name}"]
    return []


def _reject(layout: Layout, dropped: Path, problems: list[str]) -> None:
    (layout.drop / ERRORS_NAME).write_text(
        f"{dropped.name} was rejected at {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; the gateway "
        f"kept its previous config.\n" + "".join(f"{line}\n" for line in problems))
    os.replace(dropped, dropped.with_name(CONFIG_NAME + ".rejected"))


def _place(layout: Layout, target: Path, data: bytes, *, mode: int) -> None:
    owner = None if layout.uid is None else (layout.uid, -1 if layout.gid is None else layout.gid)
    write_atomic(target, data, mode, owner=owner)


def _ensure_key(layout: Layout, outcome: Outcome, say: Callable[[str], None]) -> None:
    current = layout.config_dir / CONFIG_NAME
    if not current.exists():
        say(f"batigate-firstboot: no {current} yet: copy {CONFIG_NAME} to the boot partition")
        return
    try:
        cfg = config_mod.load(current)
    except ConfigError:
        return  # the agent reports it (exit 2); nothing to generate from a broken file
    tls = cfg.mqtt.tls
    if tls is None or tls.key is None or Path(tls.key).exists():
        return
    key_path = Path(tls.key)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    _place(layout, key_path, pem, mode=0o600)
    outcome.key_created = key_path
    gw = cfg.gateway.id
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, gw)]))
           .add_extension(x509.SubjectAlternativeName(
               [x509.UniformResourceIdentifier(f"urn:dev:bgw:{gw}")]), critical=False)
           .sign(key, hashes.SHA256()))
    csr_pem = csr.public_bytes(serialization.Encoding.PEM)
    csr_path = key_path.with_suffix(".csr")
    _place(layout, csr_path, csr_pem, mode=0o644)
    (layout.drop / f"{gw}.csr").write_bytes(csr_pem)
    outcome.csr = csr_path
    say(f"batigate-firstboot: generated the gateway key {key_path}; its signing request is "
        f"{csr_path} and {gw}.csr on the boot partition")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="batigate-firstboot", description=__doc__.split("\n")[0])
    parser.add_argument("--drop", type=Path, default=Path("/boot/firmware"))
    parser.add_argument("--config-dir", type=Path, default=Path("/etc/batigate"))
    parser.add_argument("--user", default=None, help="owner of the installed files")
    args = parser.parse_args(argv)
    uid = gid = None
    if args.user:
        uid = pwd.getpwnam(args.user).pw_uid
        gid = grp.getgrnam(args.user).gr_gid
    outcome = run(Layout(args.drop, args.config_dir, uid, gid),
                  say=lambda line: print(line, flush=True))
    return 1 if outcome.problems else 0


if __name__ == "__main__":
    sys.exit(main())
