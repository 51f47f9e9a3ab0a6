"""Compact frames (CI 0x79, Kamstrup): the data records without their DIF/VIF headers.

A compact frame carries a format signature (CRC 0x3D65 over the concatenated DIB/VIB bytes
of the full frame), a second CRC word, then the values only. The receiver learns each format
from a full frame (`learn`; formats are shared by meters of one type) and later rebuilds the
full records of a compact frame from it (`expand`).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from drivers.mbus.codec import Record
from drivers.wmbus.crc import crc16
from drivers.wmbus.errors import SenderHeader, Truncated, Unsupported

MAX_FORMATS = 1024  # signatures remembered (LRU): a few per meter type, not per meter
# DIF data field -> bytes; variable length (0xD) cannot be compacted.
_LENGTH = {0x0: 0, 0x1: 1, 0x2: 2, 0x3: 3, 0x4: 4, 0x5: 4, 0x6: 6, 0x7: 8,
           0x8: 0, 0x9: 1, 0xA: 2, 0xB: 3, 0xC: 4, 0xE: 6}


@dataclass(frozen=True, slots=True)
class _Format:
    headers: tuple[bytes, ...]  # DIB + VIB of each record, in order
    lengths: tuple[int, ...]


class CompactFormats:
    """Format signatures learnt from full frames, bounded; one per receiver."""

    def __init__(self, limit: int = MAX_FORMATS) -> None:
        self._formats: OrderedDict[int, _Format] = OrderedDict()
        self._limit = limit

    def __len__(self) -> int:
        return len(self._formats)

    def learn(self, header: SenderHeader, records: list[Record]) -> None:
        headers, lengths = [], []
        for rec in records:
            if not rec.dib or rec.quantity == "manufacturer_data":
                return  # a format with manufacturer data or a special DIF cannot be compacted
            length = _LENGTH.get(rec.dib[0] & 0x0F)
            if length is None:
                return
            headers.append(rec.dib + rec.vib)
            lengths.append(length)
        if not headers:
            return
        signature = crc16(b"".join(headers))
        self._formats[signature] = _Format(tuple(headers), tuple(lengths))
        self._formats.move_to_end(signature)
        while len(self._formats) > self._limit:
            self._formats.popitem(last=False)

    def expand(self, header: SenderHeader, data: bytes) -> bytes:
        """The full record bytes of a compact frame payload (signature, CRC, values)."""
        if len(data) < 4:
            raise Truncated("compact frame without its format signature and CRC")
        signature = int.from_bytes(data[0:2], "little")
        full_crc = int.from_bytes(data[2:4], "little")
        fmt = self._formats.get(signature)
        if fmt is None:
            raise Unsupported(f"compact frame with format signature {signature:04X} not learnt "
                              f"yet: wait for a full frame of meter {header.id}")
        values = data[4:]
        out = bytearray()
        pos = 0
        for head, length in zip(fmt.headers, fmt.lengths, strict=True):
            if pos + length > len(values):
                raise Truncated(f"compact frame shorter than its format {signature:04X}")
            out += head + values[pos : pos + length]
            pos += length
        # The second word is not checked: a real Kamstrup flowIQ compact frame carries the CRC of
        # the meter's last full frame, not of the values it holds. The ELL payload CRC (or the
        # 2F2F of a decryption) already vouches for the bits.
        del full_crc
        return bytes(out) + values[pos:]
