"""IMST iM871A (and iM170A) WM-Bus HCI over USB serial (57600 8N1).

A HCI message on the line:

    A5 | ctrl(4 bits) endpoint(4 bits) | message id | length | payload(length)
       | [timestamp 4] | [RSSI 1] | [CRC-16 2]

ctrl bits: 0x8 CRC attached, 0x4 RSSI attached, 0x2 timestamp attached. The CRC is CRC-16/X-25
(reflected 0x1021, init and final xor 0xFFFF) over ctrl..RSSI, stored least significant byte
first. A received radio telegram is RADIOLINK (endpoint 2) message 0x03 WMBUSMSG_IND whose
payload is the link-layer frame from the C field on: the stick drops the L field (the HCI length
is it) and has checked and removed the block CRCs.

At start the driver pings the stick (DEVMGMT PING_REQ 0x01 -> PING_RSP 0x02) and sets, in RAM
only, the link mode and "attach RSSI" (SET_CONFIG_REQ 0x03 -> SET_CONFIG_RSP 0x04). Link modes:
S1 0x00, T1 0x03, C1 (frame format A) 0x06, C1+T1 together 0x0A (firmware 1.4 and later).
A reset is DEVMGMT RESET_REQ 0x07 -> RESET_RSP 0x08, after which the configuration is sent again.
"""

from __future__ import annotations

from drivers.wmbus.radio import Answer, Garbage, Radio, Received, cc1101_dbm, resync

SOF = 0xA5
DEVMGMT = 0x01
RADIOLINK = 0x02
PING_REQ, PING_RSP = 0x01, 0x02
SET_CONFIG_REQ, SET_CONFIG_RSP = 0x03, 0x04
RESET_REQ, RESET_RSP = 0x07, 0x08
WMBUSMSG_IND = 0x03
CTRL_CRC, CTRL_RSSI, CTRL_TIMESTAMP = 0x8, 0x4, 0x2
IIFLAG1_LINK_MODE = 0x02
IIFLAG2_RSSI = 0x10

LINK_MODES: dict[tuple[str, ...], int] = {
    ("s1",): 0x00, ("t1",): 0x03, ("c1",): 0x06, ("c1", "t1"): 0x0A,
}
MAX_PAYLOAD = 255  # the length field is one byte
# An answer is kind = endpoint << 8 | message id, so a DEVMGMT answer never looks like a telegram.
ANSWER_PING = DEVMGMT << 8 | PING_RSP
ANSWER_SET_CONFIG = DEVMGMT << 8 | SET_CONFIG_RSP
ANSWER_RESET = DEVMGMT << 8 | RESET_RSP


def crc16_x25(data: bytes | bytearray | memoryview) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc ^ 0xFFFF


def encode(endpoint: int, message: int, payload: bytes = b"", *, rssi: int | None = None,
           timestamp: int | None = None, crc: bool = True) -> bytes:
    """One HCI message (the host's commands, and the emulated stick's answers and telegrams)."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"HCI payload of {len(payload)} bytes; at most {MAX_PAYLOAD}")
    ctrl = (CTRL_CRC if crc else 0) | (CTRL_RSSI if rssi is not None else 0) | (
        CTRL_TIMESTAMP if timestamp is not None else 0)
    body = bytearray((ctrl << 4 | endpoint, message, len(payload)))
    body += payload
    if timestamp is not None:
        body += (timestamp & 0xFFFFFFFF).to_bytes(4, "little")
    if rssi is not None:
        body.append(rssi & 0xFF)
    if crc:
        body += crc16_x25(body).to_bytes(2, "little")
    return bytes((SOF,)) + bytes(body)


def link_mode(modes: tuple[str, ...]) -> int:
    key = tuple(sorted(modes))
    if key not in LINK_MODES:
        raise ValueError(f"the iM871A receives {' or '.join('+'.join(k) for k in LINK_MODES)}, "
                         f"not {'+'.join(key)}")
    return LINK_MODES[key]


class HciParser:
    """Incremental: feed bytes, get messages. Resynchronises on the next A5 after junk."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Received]:
        self._buf += data
        out: list[Received] = []
        buf = self._buf
        while buf:
            if buf[0] != SOF:
                out.append(resync(buf, SOF, "bytes outside a HCI message"))
                continue
            if len(buf) < 4:
                break
            ctrl = buf[1] >> 4
            size = 4 + buf[3] + 4 * bool(ctrl & CTRL_TIMESTAMP) + bool(ctrl & CTRL_RSSI) + (
                2 * bool(ctrl & CTRL_CRC))
            if len(buf) < size:
                break  # bounded: a message is at most 4 + 255 + 7 bytes
            message = bytes(buf[:size])
            item = _message(message, ctrl)
            if isinstance(item, Garbage):
                # A bad CRC may mean this A5 was not a start: drop one byte and look again.
                del buf[:1]
                out.append(Garbage(1, item.why))
            else:
                del buf[:size]
                out.append(item)
        return out


def _message(message: bytes, ctrl: int) -> Received:
    if ctrl & CTRL_CRC and crc16_x25(message[1:-2]) != int.from_bytes(message[-2:], "little"):
        return Garbage(len(message), "HCI CRC mismatch")
    endpoint, kind, length = message[1] & 0x0F, message[2], message[3]
    payload = message[4:4 + length]
    if endpoint == RADIOLINK and kind == WMBUSMSG_IND:
        rssi = None
        if ctrl & CTRL_RSSI:
            rssi = cc1101_dbm(message[4 + length + 4 * bool(ctrl & CTRL_TIMESTAMP)])
        if length < 10:  # C M M A A A A A A CI: shorter is no telegram
            return Garbage(len(message), f"radio telegram of {length} bytes")
        return Radio(bytes((length,)) + payload, rssi)
    return Answer(endpoint << 8 | kind, payload)


class Im871a:
    name = "im871a"
    baudrate = 57600

    def parser(self) -> HciParser:
        return HciParser()

    def setup(self, modes: tuple[str, ...]) -> list[tuple[bytes, int]]:
        config = bytes((0x00, IIFLAG1_LINK_MODE, link_mode(modes), IIFLAG2_RSSI, 0x01))
        return [(encode(DEVMGMT, PING_REQ), ANSWER_PING),
                (encode(DEVMGMT, SET_CONFIG_REQ, config), ANSWER_SET_CONFIG)]

    def reset(self) -> tuple[bytes, int] | None:
        return encode(DEVMGMT, RESET_REQ), ANSWER_RESET
