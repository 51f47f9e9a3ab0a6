"""The gateway's private key and its certificate signing request.

The key is generated here, on the gateway, and never leaves it: it is written once with mode
0600 from the moment the file exists (os.open with O_EXCL, no chmod window), and nothing in
batigate prints or sends it. The CSR carries CN = gateway id and a SAN URI `urn:gw:<id>`, because
RFC 5280 path validation (and cryptography's client verifier) requires a SAN on the leaf.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

KEY_MODE = 0o600


class KeyError_(Exception):  # noqa: N801 - KeyError is a builtin with another meaning
    """The key file cannot be created or read; the message says what to do."""


def san_uri(gateway_id: str) -> str:
    return f"urn:gw:{gateway_id}"


def generate(path: Path) -> ec.EllipticCurvePrivateKey:
    """A new P-256 key written to `path` (which must not exist) with mode 0600."""
    key = ec.generate_private_key(ec.SECP256R1())
    write_private(path, key)
    return key


def write_private(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_MODE)
    except FileExistsError:
        raise KeyError_(f"{path} exists already: a gateway keeps its key; use `batigate "
                        "provision --renew` for a new key, or remove the file on purpose") from None
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
        out.flush()
        os.fsync(out.fileno())


def load(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyError_(f"cannot read the key {path}: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyError_(f"{path} is not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyError_(f"{path}: expected an EC key, found {type(key).__name__}")
    return key


def csr(key: ec.EllipticCurvePrivateKey, gateway_id: str) -> x509.CertificateSigningRequest:
    """The CSR for `gateway_id`; its signature proves possession of the key."""
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, gateway_id)]))
            .add_extension(x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(san_uri(gateway_id))]), critical=False)
            .sign(key, hashes.SHA256()))


def csr_pem(request: x509.CertificateSigningRequest) -> str:
    return request.public_bytes(serialization.Encoding.PEM).decode()


def public_fingerprint(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> str:
    """SHA-256 of the public key (SubjectPublicKeyInfo): what a technician may read aloud."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    der = public.public_bytes(serialization.Encoding.DER,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return digest.finalize().hex(":")[:47]  # the first 16 bytes, enough to compare by eye
