"""A small hand-written protobuf codec for the Sparkplug B payload (agent/wire/sparkplug_b.proto).

Why by hand and not the `protobuf` package: the payloads we write use six field types of two
messages, the gateway would carry a 2 MB native library (and a protoc version pinned to its
runtime) for them, and what we read (NCMD/DCMD from the broker) is hostile input we want bounded
explicitly: size, metric count, string length, nesting (none: nested messages are skipped). The
encoding is checked against an independent decoder (PyPI `pysparkplug`, Google's protobuf runtime)
in tests/interop/sparkplug/.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

# DataType (Sparkplug B 3.0 §6.4.16), the ones we write
INT64, DOUBLE, BOOLEAN, STRING = 4, 10, 11, 12
MAX_PAYLOAD = 65536  # bytes of a command payload we decode
MAX_METRICS = 256  # metrics of one command
MAX_TEXT = 1024  # bytes of a name or string value


@dataclass(frozen=True, slots=True)
class Metric:
    name: str | None = None
    alias: int | None = None
    timestamp: int | None = None  # ms
    datatype: int | None = None  # births only
    value: Any = None  # None: is_null
    historical: bool = False


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1  # negative int64: two's complement, ten bytes
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _bytes(field: int, data: bytes) -> bytes:
    return _key(field, 2) + _varint(len(data)) + data


def encode_metric(metric: Metric) -> bytes:
    out = bytearray()
    if metric.name is not None:
        out += _bytes(1, metric.name.encode())
    if metric.alias is not None:
        out += _key(2, 0) + _varint(metric.alias)
    if metric.timestamp is not None:
        out += _key(3, 0) + _varint(metric.timestamp)
    if metric.datatype is not None:
        out += _key(4, 0) + _varint(metric.datatype)
    if metric.historical:
        out += _key(5, 0) + b"\x01"
    value = metric.value
    if value is None:
        out += _key(7, 0) + b"\x01"
    elif isinstance(value, bool):
        out += _key(14, 0) + (b"\x01" if value else b"\x00")
    elif isinstance(value, str):
        out += _bytes(15, value.encode())
    elif metric.datatype == INT64 or (metric.datatype is None and isinstance(value, int)):
        out += _key(11, 0) + _varint(int(value))
    else:
        out += _key(13, 1) + struct.pack("<d", float(value))
    return bytes(out)


def encode(timestamp: int, metrics: list[Metric], seq: int | None) -> bytes:
    out = bytearray(_key(1, 0) + _varint(timestamp))
    for metric in metrics:
        out += _bytes(2, encode_metric(metric))
    if seq is not None:
        out += _key(3, 0) + _varint(seq)
    return bytes(out)


class DecodeError(ValueError):
    pass


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise DecodeError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value & ((1 << 64) - 1), pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) of one message level; nested messages stay bytes."""
    out = []
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        field, wire_type = key >> 3, key & 7
        if field == 0:
            raise DecodeError("field number 0")
        if wire_type == 0:
            value, pos = _read_varint(data, pos)
        elif wire_type == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire_type == 5:
            value, pos = data[pos:pos + 4], pos + 4
        elif wire_type == 2:
            length, pos = _read_varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        else:
            raise DecodeError(f"wire type {wire_type} not supported")
        if pos > len(data):
            raise DecodeError("truncated field")
        out.append((field, wire_type, value))
    return out


def _text(value: bytes) -> str:
    if len(value) > MAX_TEXT:
        raise DecodeError(f"text longer than {MAX_TEXT} bytes")
    return value.decode("utf-8")


def _metric(data: bytes) -> Metric:
    fields: dict[str, Any] = {}
    value: Any = None
    for field, wire_type, raw in _fields(data):
        if field == 1 and wire_type == 2:
            fields["name"] = _text(raw)
        elif field == 2 and wire_type == 0:
            fields["alias"] = raw
        elif field == 3 and wire_type == 0:
            fields["timestamp"] = raw
        elif field == 4 and wire_type == 0:
            fields["datatype"] = raw
        elif field == 10 and wire_type == 0:
            value = raw - (1 << 32) if raw >= 1 << 31 else raw  # Int32 two's complement
        elif field == 11 and wire_type == 0:
            value = raw - (1 << 64) if raw >= 1 << 63 else raw
        elif field == 12 and wire_type == 5:
            value = struct.unpack("<f", raw)[0]
        elif field == 13 and wire_type == 1:
            value = struct.unpack("<d", raw)[0]
        elif field == 14 and wire_type == 0:
            value = bool(raw)
        elif field == 15 and wire_type == 2:
            value = _text(raw)
    if isinstance(value, float) and not math.isfinite(value):
        raise DecodeError("value is not a finite number")
    return Metric(value=value, **fields)


def decode(data: bytes) -> tuple[int | None, list[Metric]]:
    """A command payload (NCMD/DCMD): (timestamp, metrics); bounded, DecodeError when bad."""
    if len(data) > MAX_PAYLOAD:
        raise DecodeError(f"payload larger than {MAX_PAYLOAD} bytes")
    timestamp = None
    metrics = []
    for field, wire_type, raw in _fields(data):
        if field == 1 and wire_type == 0:
            timestamp = raw
        elif field == 2 and wire_type == 2:
            if len(metrics) >= MAX_METRICS:
                raise DecodeError(f"more than {MAX_METRICS} metrics")
            metrics.append(_metric(raw))
    return timestamp, metrics
