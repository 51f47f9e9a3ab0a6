"""A plain input: one telegram per line, in hex (rtl-wmbus and other SDR decoders, test rigs).

Accepted lines: bare hex (`2C446850...`), optionally `0x`-prefixed or with spaces, and the
rtl_wmbus output form `T1;1;1;2019-03-29 17:46:03.000;97;148;12345678;0x2C44...` (the field
that starts with 0x is the telegram; the fifth field is its RSSI-like level, not dBm, so it is
not reported). Lines are bounded (`MAX_LINE`); a longer one is dropped whole and counted. The
frames may still carry their link-layer CRCs (`crc_checked=False`): the decoder handles both.
"""

from __future__ import annotations

import re

from drivers.wmbus.radio import Garbage, Radio, Received

MAX_LINE = 1200  # a wM-Bus frame is at most 256 bytes with CRCs: 512 hex digits, plus slack
_HEX = re.compile(r"^[0-9A-Fa-f]+$")


class HexLineParser:
    def __init__(self) -> None:
        self._buf = bytearray()
        self._skipping = False  # inside a line that overflowed

    def feed(self, data: bytes) -> list[Received]:
        self._buf += data
        out: list[Received] = []
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                if len(self._buf) > MAX_LINE:
                    out.append(Garbage(len(self._buf), f"line longer than {MAX_LINE} bytes"))
                    self._buf.clear()
                    self._skipping = True
                break
            line = bytes(self._buf[:end])
            del self._buf[:end + 1]
            if self._skipping:
                self._skipping = False
                out.append(Garbage(len(line) + 1, f"line longer than {MAX_LINE} bytes"))
                continue
            item = parse_line(line)
            if item is not None:
                out.append(item)
        return out


def parse_line(raw: bytes) -> Received | None:
    text = raw.decode("ascii", "replace").strip()
    if not text or text.startswith("#"):
        return None
    if ";" in text:  # rtl_wmbus: mode;crc ok;...;0xHEX
        fields = text.split(";")
        hexes = [f for f in fields if f.lower().startswith("0x")]
        if len(fields) > 1 and fields[1].strip() == "0":
            return Garbage(len(raw) + 1, "the receiver marks this telegram's CRC as bad")
        if not hexes:
            return Garbage(len(raw) + 1, "no 0x… telegram field in the line")
        text = hexes[-1]
    text = text.removeprefix("0x").removeprefix("0X").replace(" ", "")
    if len(text) % 2 or not _HEX.match(text):
        return Garbage(len(raw) + 1, "not a hex telegram")
    frame = bytes.fromhex(text)
    if len(frame) < 11:
        return Garbage(len(raw) + 1, f"telegram of {len(frame)} bytes")
    return Radio(frame, None, crc_checked=False)


class HexLines:
    name = "hex"
    baudrate = 115200

    def parser(self) -> HexLineParser:
        return HexLineParser()

    def setup(self, modes: tuple[str, ...]) -> list[tuple[bytes, int]]:
        return []  # nothing to configure: the SDR decoder chose its modes

    def reset(self) -> tuple[bytes, int] | None:
        return None  # a silent input is reopened (the command restarted)
