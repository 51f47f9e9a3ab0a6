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
  not send it again), and marks it: `take_oversized()` returns its real size exactly once, for
  the message callback that follows, which blanks its payload and answers 413.

Any other packet type over the limit (no broker sends those) ends the connection.
"""

from __future__ import annotations

from typing import Any

PUBLISH = 0x30
CHUNK = 65536  # bytes read per call while dropping an oversized payload


class PacketGuard:
    def __init__(self, paho_client: Any, limit: int) -> None:
        self.paho = paho_client
        self.limit = limit
        self.refused = 0  # oversized packets seen
        self.dropped_bytes = 0
        self._recv = paho_client._sock_recv  # noqa: SLF001 - the seam (see the module doc)
        self._oversized: int | None = None
        paho_client._sock_recv = self.recv  # noqa: SLF001

    def take_oversized(self) -> int | None:
        """The real size of the packet just completed, if it was over the limit (once)."""
        size, self._oversized = self._oversized, None
        return size

    def recv(self, bufsize: int) -> bytes:
        packet = self.paho._in_packet  # noqa: SLF001
        total = packet["remaining_length"]
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
