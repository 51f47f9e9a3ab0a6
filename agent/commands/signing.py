"""Ed25519 signatures over commands (DESIGN §3.3, research/standards.md §6.9).

The signed bytes are the canonical JSON of the request without `sig`: keys sorted, no spaces,
UTF-8, no NaN/Infinity. The backend signs the object it sends; the gateway re-canonicalizes what it
parsed (from JSON or CBOR), so whitespace, key order and the wire encoding do not matter. Numbers
are safest as integers (`exp` in whole seconds): float formatting is where JSON libraries differ.

The signature travels base64 (standard or URL-safe alphabet, padding optional) in `sig`.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.sdk.durable import write_atomic

SIG_FIELD = "sig"


class SignatureError(ValueError):
    """Missing, malformed or wrong signature; the message says which, never why in detail."""


def canonical(request: dict[str, Any]) -> bytes:
    """The bytes that are signed: the request without `sig`, in canonical JSON."""
    unsigned = {k: v for k, v in request.items() if k != SIG_FIELD}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    """Read an Ed25519 public key: PEM (`-----BEGIN PUBLIC KEY-----`) or the raw 32 bytes in
    base64 on one line (what `batigate` tooling and most KMSs export)."""
    data = Path(path).read_bytes()
    return public_key_from_bytes(data)


def public_key_from_bytes(data: bytes) -> Ed25519PublicKey:
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        key = serialization.load_pem_public_key(text)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the command key must be an Ed25519 public key")
        return key
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError("the command key is neither PEM nor base64 of 32 raw bytes") from None
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, this one is {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def _decode_sig(sig: object) -> bytes:
    if not isinstance(sig, str) or len(sig) > 200:
        raise SignatureError("sig must be a base64 string")
    text = sig.strip().replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise SignatureError("sig is not valid base64") from None
    if len(raw) != 64:
        raise SignatureError(f"an Ed25519 signature is 64 bytes, this one is {len(raw)}")
    return raw


def verify(request: dict[str, Any], key: Ed25519PublicKey) -> None:
    """Raise SignatureError unless `request["sig"]` signs `canonical(request)` with `key`."""
    if SIG_FIELD not in request:
        raise SignatureError("unsigned command; this gateway requires signed commands")
    raw = _decode_sig(request[SIG_FIELD])
    try:
        message = canonical(request)
    except (TypeError, ValueError):
        raise SignatureError("the request cannot be put in canonical JSON") from None
    try:
        key.verify(raw, message)
    except InvalidSignature:
        raise SignatureError("bad signature") from None


def sign(request: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """A copy of `request` with `sig` set: the backend side, used by tests and tooling."""
    signed = {k: v for k, v in request.items() if k != SIG_FIELD}
    signed[SIG_FIELD] = base64.b64encode(key.sign(canonical(signed))).decode("ascii")
    return signed


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def write_new_key(private: Path) -> Ed25519PrivateKey:
    """A new Ed25519 key (command key, release key): the private PEM written 0600, never
    readable by others even for a moment, and the public PEM beside it as `<private>.pub`.
    The caller refuses an existing file first: a lost key means re-keying the gateways."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    write_atomic(private, pem, 0o600)
    write_atomic(private.with_name(private.name + ".pub"), public_pem(key), 0o644)
    return key
