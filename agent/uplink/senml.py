"""SenML (RFC 8428) records and the message envelope of DESIGN §3.2, in JSON or CBOR."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import cbor2

from agent.sdk.models import Quality, Reading

# RFC 8428 §6: integer labels used in SenML+CBOR.
CBOR_LABELS = {"bver": -1, "bn": -2, "bt": -3, "bu": -4, "bv": -5, "bs": -6, "n": 0, "u": 1,
               "v": 2, "vs": 3, "vb": 4, "s": 5, "t": 6, "ut": 7, "vd": 8}


def base_name(gateway: str, device: str) -> str:
    return f"urn:dev:bgw:{gateway}:{device}:"


def records(gateway: str, device: str, readings: Sequence[Reading]) -> list[dict[str, Any]]:
    """One SenML pack for one device poll: base name and base time on the first record only.

    Only readings with a value become records: RFC 8428 §4.2 wants exactly one value field in a
    record (a point the device refused goes to `unread()` instead). A reading of uncertain
    quality keeps its value and carries the extension field `q`; `q` is left out when the
    quality is good, the common case. `q` deliberately has no trailing `_`: it is optional to
    understand (RFC 8428 §4.4, §12.2), since a receiver that ignores it still reads a real
    value, only with less trust; a mandatory-to-understand `q_` would make every generic SenML
    reader reject the whole pack.
    """
    out: list[dict[str, Any]] = []
    kept = [r for r in readings if r.value is not None]
    if not kept:
        return out
    base_time = kept[0].ts
    for index, reading in enumerate(kept):
        record: dict[str, Any] = {}
        if index == 0:
            record["bn"] = base_name(gateway, device)
            record["bt"] = base_time
        record["n"] = reading.name
        if reading.ts != base_time:
            record["t"] = round(reading.ts - base_time, 3)
        if reading.unit is not None:
            record["u"] = reading.unit
        value = reading.value
        if isinstance(value, bool):
            record["vb"] = value
        elif isinstance(value, int | float):
            record["v"] = value
        elif isinstance(value, str):
            record["vs"] = value
        if reading.quality is not Quality.GOOD:
            record["q"] = reading.quality.value
        out.append(record)
    return out


def unread(readings: Sequence[Reading]) -> list[dict[str, Any]]:
    """The points of a poll that have no value (refused, invalid, unreadable): `{"n": name}`,
    names relative to the pack's base name, in poll order."""
    return [{"n": r.name} for r in readings if r.value is None]


def telemetry(gateway: str, device: str, readings: Sequence[Reading]) -> dict[str, Any]:
    """The body of a `dev/{dev}/tm` message: `e` (the SenML pack, maybe empty when every point
    failed) first, then `bad` (the points without a value) when there are any."""
    body: dict[str, Any] = {"e": records(gateway, device, readings)}
    missing = unread(readings)
    if missing:
        body["bad"] = missing
    return body


CONTENT_TYPES = {"json": "application/json", "cbor": "application/cbor"}


def encode(envelope: dict[str, Any], encoding: str) -> bytes:
    if encoding == "json":
        return json.dumps(envelope, separators=(",", ":")).encode()
    packed = dict(envelope)
    if "e" in packed:
        packed["e"] = [{CBOR_LABELS.get(k, k): v for k, v in rec.items()} for rec in packed["e"]]
    return cbor2.dumps(packed)


def decode(payload: bytes, encoding: str) -> dict[str, Any]:
    """The inverse of `encode` (tests and the CLI use it)."""
    if encoding == "json":
        return json.loads(payload)
    data = cbor2.loads(payload)
    names = {v: k for k, v in CBOR_LABELS.items()}
    if "e" in data:
        data["e"] = [{names.get(k, k): v for k, v in rec.items()} for rec in data["e"]]
    return data
