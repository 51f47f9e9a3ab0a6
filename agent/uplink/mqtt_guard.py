"""The largest MQTT packet the agent takes in, enforced while it is read (MQTT 3.1.1 and 5).

Under MQTT 5 the limit is announced in CONNECT (Maximum Packet Size): a conforming broker then
never sends more and drops what would exceed it. Under 3.1.1 there is no such property, and
paho-mqtt reads a packet whole into memory before handling it, so a 100 MB PUBLISH on `cmd/req`
would be in the agent's memory before any size check. paho knows a packet's Remaining Length
before it reads the rest; `PacketGuard` sits on paho's socket reads (its `_sock_recv`, the one
seam paho offers) and, once a PUBLISH is known to be over the limit:

- keeps its head (topic, packet id, MQTT 5 properties such as the response topic) up to the
  limit and drops the rest as it streams in, in bounded chunks: memory stays at the limit;
- lets paho finish the packet as a normal PUBLISH (so QoS 1 is acknowledged and the broker does
  not send it again), with its payload blanked before any callback sees it (paho's
  `_handle_on_message`, which feeds both the topic callbacks and aiomqtt), and records its real
  size in `cut` by message id, so that the command path can answer 413.

Any other packet type over the limit (no broker sends those) ends the connection. The agent
subscribes with QoS 1 at most, so no QoS 2 message (which paho dispatches only at PUBREL) reaches
it.
"""

from __future__ import annotations

from typing import Any

PUBLISH = 0x30
CHUNK = 65536  # bytes read per call while dropping an oversized payload
MAX_CUT_KEPT = 64


class PacketGuard:
    def __init__(self, paho_client: Any, limit: int) -> None:
        self.paho = paho_client
        self.limit = limit
        self.refused = 0  # oversized packets seen
        self.dropped_bytes = 0
        self.cut: dict[int, int] = {}  # message id -> real size of a message cut at the limit
        self._oversized: int | None = None  # the packet being read was cut: its real size
        # The seams (see the module doc): paho's socket read and its message dispatch.
        self._recv = paho_client._sock_recv  # noqa: SLF001
        self._dispatch = paho_client._handle_on_message  # noqa: SLF001
        paho_client._sock_recv = self.recv  # noqa: SLF001
        paho_client._handle_on_message = self.dispatch  # noqa: SLF001

    def dispatch(self, message: Any) -> None:
        if self._oversized is not None:
            message.payload = b""  # only its head was kept: never taken for anything
            self.cut[message.mid] = self._oversized
            self._oversized = None
            while len(self.cut) > MAX_CUT_KEPT:  # cut messages nobody asked about (not commands)
                self.cut.pop(next(iter(self.cut)))
        self._dispatch(message)

    def recv(self, bufsize: int) -> bytes:
        packet = self.paho._in_packet  # noqa: SLF001
        total = packet["remaining_length"]
        if packet["command"] == 0:  # a new packet begins: the last one was handled
            self._oversized = None
        if not packet["have_remaining"] or total <= self.limit:
            return self._recv(bufsize)
        if packet["command"] & 0xF0 != PUBLISH:
            raise OSError(f"MQTT packet of {total} bytes over the limit of {self.limit}")
        while True:
            left = packet["to_process"]  # bytes of this packet not read yet
            data = self._recv(min(CHUNK, left))  # BlockingIOError when nothing waits: fine
            if not data:
                return data  # the connection closed
            kept = len(packet["packet"])
            keep = max(0, min(len(data), self.limit - 1 - kept))
            finished = len(data) == left
            out = data[:keep] + (data[-1:] if finished and keep < len(data) else b"")
            # paho subtracts what we return; what we drop is subtracted here.
            packet["to_process"] -= len(data) - len(out)
            self.dropped_bytes += len(data) - len(out)
            if finished:
                self.refused += 1
                self._oversized = total
            if out:
                return out
            # Everything in this chunk was dropped: read on (a TLS layer may hold more bytes
            # than the socket shows), until the packet ends or nothing more waits.
