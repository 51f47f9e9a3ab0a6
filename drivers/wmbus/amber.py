"""Würth Elektronik / Amber AMB8465 (868 MHz USB stick) and AMB3665, in command mode (9600 8N1).

A command-mode frame on the line:

    FF | command | length | payload(length) | checksum (XOR of every byte before it, FF included)

A received radio telegram is CMD_DATA_IND (0x03) whose payload is the link-layer frame from the
C field on (the L field is dropped, CRCs checked and removed), followed by one RSSI byte when the
stick's RSSI_Enable setting is on: L = length - 1 then. The RSSI byte is the CC1101 register
(two's complement, half dB, offset 74 at 868 MHz). A response to a command has bit 7 set:
CMD_SET_MODE_REQ 0x04 -> 0x84 (status 0 = done), CMD_RESET_REQ 0x05 -> 0x85, CMD_FWV_REQ 0x0C
-> 0x8C (firmware version, our "is it there" probe).

The stick frames telegrams this way only with UART_CMD_Out_Enable = 1 and appends the RSSI only
with RSSI_Enable = 1: both are non-volatile user settings, written once at commissioning (the
vendor's tool). The driver sets the link mode in RAM at every start (CMD_SET_MODE_REQ): T1 and
C1 together 0x09 (C2/T2 "other"), C1 alone 0x0E, T1 alone 0x08. The Amber sticks have no S1.
"""

from __future__ import annotations

from functools import reduce

from drivers.wmbus.radio import Answer, Garbage, Radio, Received, cc1101_dbm, resync

START = 0xFF
CMD_DATA_IND = 0x03
CMD_SET_MODE_REQ = 0x04
CMD_RESET_REQ = 0x05
CMD_FWV_REQ = 0x0C
RESPONSE = 0x80
LINK_MODES: dict[tuple[str, ...], int] = {("t1",): 0x08, ("c1",): 0x0E, ("c1", "t1"): 0x09}
# Commands and indications the stick sends: anything else after FF is not a frame start.
_KNOWN = {CMD_DATA_IND} | {RESPONSE | c for c in range(0x00, 0x20)}


def checksum(data: bytes | bytearray) -> int:
    return reduce(lambda a, b: a ^ b, data, 0)


def encode(command: int, payload: bytes = b"") -> bytes:
    if len(payload) > 255:
        raise ValueError(f"Amber payload of {len(payload)} bytes; at most 255")
    body = bytes((START, command, len(payload))) + payload
    return body + bytes((checksum(body),))


def telegram(frame_without_l: bytes, rssi_raw: int | None) -> bytes:
    """CMD_DATA_IND as the stick sends it (the emulator's side)."""
    return encode(CMD_DATA_IND, frame_without_l + (bytes((rssi_raw,)) if rssi_raw is not None
                                                   else b""))


def link_mode(modes: tuple[str, ...]) -> int:
    key = tuple(sorted(modes))
    if key not in LINK_MODES:
        raise ValueError(f"the Amber sticks receive t1, c1 or both, not {'+'.join(key)}")
    return LINK_MODES[key]


class AmberParser:
    def __init__(self, rssi: bool = True) -> None:
        self._buf = bytearray()
        self.rssi = rssi

    def feed(self, data: bytes) -> list[Received]:
        self._buf += data
        out: list[Received] = []
        buf = self._buf
        while buf:
            if buf[0] != START or (len(buf) > 1 and buf[1] not in _KNOWN):
                out.append(resync(buf, START, "bytes outside an Amber frame"))
                continue
            if len(buf) < 3:
                break
            size = 4 + buf[2]
            if len(buf) < size:
                break  # bounded: at most 259 bytes wait here
            frame = bytes(buf[:size])
            if checksum(frame[:-1]) != frame[-1]:
                del buf[:1]
                out.append(Garbage(1, "Amber checksum mismatch"))
                continue
            del buf[:size]
            out.append(self._item(frame))
        return out

    def _item(self, frame: bytes) -> Received:
        command, payload = frame[1], frame[3:-1]
        if command != CMD_DATA_IND:
            return Answer(command, payload)
        rssi = None
        if self.rssi:
            if not payload:
                return Garbage(len(frame), "empty radio telegram")
            payload, rssi = payload[:-1], cc1101_dbm(payload[-1])
        if len(payload) < 10:
            return Garbage(len(frame), f"radio telegram of {len(payload)} bytes")
        return Radio(bytes((len(payload),)) + payload, rssi)


class Amber:
    baudrate = 9600

    def __init__(self, name: str = "amb8465", rssi: bool = True) -> None:
        self.name = name
        self.rssi = rssi

    def parser(self) -> AmberParser:
        return AmberParser(self.rssi)

    def setup(self, modes: tuple[str, ...]) -> list[tuple[bytes, int]]:
        return [(encode(CMD_FWV_REQ), RESPONSE | CMD_FWV_REQ),
                (encode(CMD_SET_MODE_REQ, bytes((link_mode(modes),))),
                 RESPONSE | CMD_SET_MODE_REQ)]

    def reset(self) -> tuple[bytes, int] | None:
        return encode(CMD_RESET_REQ), RESPONSE | CMD_RESET_REQ
