"""Check a gateway certificate before it is used, install it atomically, roll back.

A certificate is installed only when it (1) is a PEM X.509 certificate, (2) carries the public
key of the gateway's own private key, (3) names the gateway (CN = gateway id), (4) is valid now,
and (5) chains to the CA by RFC 5280 path validation (cryptography's client verifier). Each
failure says which of these and what to do, because the person reading it is on a ladder.

Installing keeps the previous certificate and key as `*.prev`, replaces files with os.replace
(atomic on one file system) and puts the previous ones back if any step fails.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from agent.sdk.durable import write_atomic
from provisioning import keys

CERT_MODE = 0o644  # public; the key stays 0600


class CertProblem(Exception):
    """The certificate cannot be used; the message is meant for the technician."""


def pending_key_path(key_path: Path) -> Path:
    """Where a rotation keeps the new key until its certificate is installed."""
    return key_path.with_name(key_path.name + ".new")


def prev_path(path: Path) -> Path:
    return path.with_name(path.name + ".prev")


def load_chain(pem: bytes | str, what: str = "the certificate") -> list[x509.Certificate]:
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise CertProblem(f"{what} is not a PEM certificate ({exc})") from None
    if not chain:
        raise CertProblem(f"{what} holds no certificate")
    return chain


def load_ca(path: Path | None) -> list[x509.Certificate]:
    if path is None:
        raise CertProblem("no CA to check against: set mqtt.tls.ca in the config or give --ca")
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CertProblem(f"cannot read the CA {path}: {exc.strerror or exc}") from None
    return load_chain(data, f"the CA file {path}")


def common_name(name: x509.Name) -> str | None:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else None


def same_key(cert: x509.Certificate,
             key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bool:
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return (cert.public_key().public_bytes(serialization.Encoding.DER, spki)
            == public.public_bytes(serialization.Encoding.DER, spki))


def check(chain: list[x509.Certificate], key: ec.EllipticCurvePrivateKey,
          ca: list[x509.Certificate], gateway_id: str, now: dt.datetime) -> x509.Certificate:
    """The leaf when every check passes; CertProblem naming the first that fails."""
    leaf, intermediates = chain[0], chain[1:]
    if not same_key(leaf, key):
        raise CertProblem("the certificate is not for this gateway's key (it was issued for "
                          "another CSR): send the CSR of `batigate provision` to the CA again")
    name = common_name(leaf.subject)
    if name != gateway_id:
        raise CertProblem(f"the certificate names {name!r}, this gateway is {gateway_id!r}")
    if now < leaf.not_valid_before_utc:
        start = f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M}"
        raise CertProblem(f"the certificate is valid only from {start} UTC: check the gateway "
                          "clock (NTP) or the CA's")
    if now > leaf.not_valid_after_utc:
        raise CertProblem(f"the certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} "
                          "UTC: ask the CA for a new one")
    try:
        verifier = PolicyBuilder().store(Store(ca)).time(now).build_client_verifier()
        verifier.verify(leaf, intermediates)
    except VerificationError as exc:
        issuer = common_name(leaf.issuer)
        raise CertProblem(f"the certificate does not chain to the configured CA (issuer "
                          f"{issuer!r}): {exc}") from None
    return leaf


def describe(cert: x509.Certificate, now: dt.datetime | None = None) -> dict[str, Any]:
    """What a technician compares with the CA's records; nothing secret in it."""
    now = now or dt.datetime.now(dt.UTC)
    after = cert.not_valid_after_utc
    return {"subject": common_name(cert.subject), "issuer": common_name(cert.issuer),
            "serial": f"{cert.serial_number:x}",
            "not_before": cert.not_valid_before_utc.isoformat(),
            "not_after": after.isoformat(),
            "days_left": round((after - now).total_seconds() / 86400, 1),
            "sha256": cert.fingerprint(hashes.SHA256()).hex(":")}


@dataclass(frozen=True)
class Installed:
    cert: Path
    key: Path
    new_key: bool  # True: a rotation, the pending key became the key
    backup: bool  # a previous certificate was kept as *.prev


def install(chain: list[x509.Certificate], cert_path: Path, key_path: Path, *,
            new_key: bool) -> Installed:
    """Write the certificate (and, for a rotation, move the pending key in place). The previous
    pair stays as *.prev; any failure puts it back before the error goes up."""
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    pending = pending_key_path(key_path)
    backup = cert_path.exists()
    if backup:
        _copy(cert_path, prev_path(cert_path), CERT_MODE)
    if new_key and key_path.exists():
        _copy(key_path, prev_path(key_path), keys.KEY_MODE)
    try:
        write_atomic(cert_path, pem, CERT_MODE)
        if new_key:
            os.replace(pending, key_path)
    except OSError:
        rollback(cert_path, key_path, key_too=new_key)
        raise
    return Installed(cert_path, key_path, new_key, backup)


def rollback(cert_path: Path, key_path: Path, *, key_too: bool = True) -> bool:
    """Put the previous certificate (and key) back; False when there is none."""
    cert_prev, key_prev = prev_path(cert_path), prev_path(key_path)
    if not cert_prev.exists():
        return False
    if key_too and key_prev.exists():
        os.replace(key_prev, key_path)
    os.replace(cert_prev, cert_path)
    return True


def _copy(source: Path, target: Path, mode: int) -> None:
    # Created with its final mode: a key copy is never readable by others, even for a moment.
    write_atomic(target, source.read_bytes(), mode)
