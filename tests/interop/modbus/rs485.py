"""An RS-485 line stand-in: pseudo-terminals whose far end paces bytes at the line's speed.

    python -m tests.interop.modbus.rs485 --slave-bin BIN --baud 9600 --parity E --stopbits 1
                                         --units 1,2 --frames FILE

Prints `ready /dev/pts/N` once the line is up: the master (the driver under test) opens that
port. Behind it, one libmodbus RTU slave per unit, each on its own pty. A pty carries bytes
instantly; this process puts them on one shared timeline instead, as a half-duplex line would:

- every character takes (start + 8 data + parity + stop bits) / baud seconds (11 bits for 8E1,
  10 for 8N1), and reaches the other side only when its last bit has gone; characters queue
  behind each other, whoever sends them;
- every node hears every frame but its own: the master's requests reach all slaves, a slave's
  answer reaches the master and the other slaves (libmodbus expects that: after a request for
  another unit it reads that unit's answer off the line and ignores it);
- the slaves are modelled as conformant: a slave only knows a request has ended after 3.5
  characters of silence, so its answer starts no earlier than t3.5 after the request's end
  (libmodbus answers as soon as it has parsed a request, which no real RS-485 slave can);
- before each frame the master starts, the silence since the line's last character is measured
  from the moment that character was handed to the master's port, and a silence under t3.5
  (1.75 ms above 19200 baud, Modbus over serial line V1.02 §2.5.1.1) is recorded as a violation.

One JSON line per frame goes to FILE once the frame is over: `from` (m/s), `unit`, `fc`,
`bytes`, `start`, `end` (monotonic seconds), `silence` (before it; null for the first), `violation`.
Stops on SIGTERM, its slaves with it.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
import tty
from typing import Any, TextIO

MAX_RUN = 600.0  # a stand-in left behind by a crashed test ends by itself


def char_time(baud: int, parity: str, stopbits: int) -> float:
    return (1 + 8 + (parity != "N") + stopbits) / baud


def silences(baud: int, tc: float) -> tuple[float, float]:
    """(t1.5, t3.5): fixed 0.75 ms / 1.75 ms above 19200 baud, as the serial-line spec says."""
    if baud > 19200:
        return 0.00075, 0.00175
    return 1.5 * tc, 3.5 * tc


class Line:
    def __init__(self, tc: float, t15: float, t35: float, master_fd: int, slave_fds: list[int],
                 frames: TextIO) -> None:
        self.tc, self.t15, self.t35 = tc, t15, t35
        self.master_fd, self.slave_fds = master_fd, slave_fds
        self.frames = frames
        self.free = 0.0  # scheduled end of the last character on the line
        self.handed = 0.0  # when the last character of a slave answer reached the master's port
        self.frame: dict[str, Any] | None = None
        # (time, seq, fds that hear it, byte, sender)
        self.due: list[tuple[float, int, tuple[int, ...], int, str]] = []
        self._seq = 0

    def put(self, sender_fd: int, data: bytes, arrival: float) -> None:
        sender = "m" if sender_fd == self.master_fd else "s"
        hearers = tuple(fd for fd in (self.master_fd, *self.slave_fds) if fd != sender_fd)
        for byte in data:
            self._put_char(sender, hearers, byte, arrival)

    def _put_char(self, sender: str, hearers: tuple[int, ...], byte: int,
                  arrival: float) -> None:
        frame = self.frame
        previous_end = max(self.free, self.handed) if sender == "m" else self.free
        silence = arrival - previous_end
        continues = frame is not None and frame["from"] == sender and silence < self.t15
        if not continues:
            self._close_frame()
            if sender == "s":
                start = max(arrival, self.free + self.t35)  # a conformant slave's turnaround
                silence = start - self.free
            else:
                start = max(arrival, self.free)
            first = frame is None and self.free == 0.0
            measured = None if first else round(silence, 6)
            violation = (sender == "m" and measured is not None and silence < self.t35)
            self.frame = {"from": sender, "unit": byte, "fc": None, "bytes": 0, "start": start,
                          "end": start, "silence": measured, "violation": violation}
        else:
            start = max(arrival, self.free)
        current = self.frame
        assert current is not None
        if current["bytes"] == 1:
            current["fc"] = byte
        current["bytes"] += 1
        end = start + self.tc
        current["end"] = end
        self.free = end
        self._seq += 1
        heapq.heappush(self.due, (end, self._seq, hearers, byte, sender))

    def deliver(self) -> None:
        now = time.monotonic()
        while self.due and self.due[0][0] <= now:
            _, _, targets, byte, sender = heapq.heappop(self.due)
            if sender == "s":
                self.handed = time.monotonic()  # taken before the write: never too late
            for fd in targets:
                try:
                    os.write(fd, bytes([byte]))
                except OSError:
                    pass  # a slave that died; the test sees its silence
            now = time.monotonic()

    def next_wake(self) -> float | None:
        if self.due:
            return self.due[0][0]
        if self.frame is not None:
            return self.free + self.t35  # then the frame is over for sure
        return None

    def idle_check(self) -> None:
        if self.frame is not None and not self.due and time.monotonic() >= self.free + self.t35:
            self._close_frame()

    def _close_frame(self) -> None:
        if self.frame is not None:
            record = dict(self.frame)
            record["start"], record["end"] = round(record["start"], 6), round(record["end"], 6)
            self.frames.write(json.dumps(record) + "\n")
            self.frames.flush()
            self.frame = None


def _open_pty() -> tuple[int, int, str]:
    master, slave = pty.openpty()
    tty.setraw(slave)  # no echo, no line discipline before the real user opens it
    return master, slave, os.ttyname(slave)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slave-bin", required=True)
    parser.add_argument("--baud", type=int, default=9600)
    parser.add_argument("--parity", default="E", choices="NEO")
    parser.add_argument("--stopbits", type=int, default=1, choices=(1, 2))
    parser.add_argument("--units", default="1")
    parser.add_argument("--frames", required=True)
    args = parser.parse_args()
    tc = char_time(args.baud, args.parity, args.stopbits)
    t15, t35 = silences(args.baud, tc)
    children: list[subprocess.Popen[bytes]] = []
    held: list[int] = []  # the pty slave ends stay open here so a reopen never sees a hang-up
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    slave_fds = []
    for unit in args.units.split(","):
        master, slave, name = _open_pty()
        held.append(slave)
        slave_fds.append(master)
        child = subprocess.Popen([args.slave_bin, "rtu", name, str(args.baud), args.parity,
                                  str(args.stopbits), unit], stdout=subprocess.PIPE)
        children.append(child)
        assert child.stdout is not None
        if child.stdout.readline().strip() != b"ready":
            sys.exit(f"libmodbus slave {unit} did not start")
    master_fd, master_slave, port = _open_pty()
    held.append(master_slave)
    print(f"ready {port}", flush=True)
    deadline = time.monotonic() + MAX_RUN
    with open(args.frames, "a", encoding="utf-8") as frames:
        line = Line(tc, t15, t35, master_fd, slave_fds, frames)
        readable = [master_fd, *slave_fds]
        try:
            while not stopping and time.monotonic() < deadline:
                wake = line.next_wake()
                timeout = 0.2 if wake is None else max(0.0, min(0.2, wake - time.monotonic()))
                try:
                    ready, _, _ = select.select(readable, [], [], timeout)
                except InterruptedError:
                    continue
                arrival = time.monotonic()
                for fd in ready:
                    try:
                        data = os.read(fd, 4096)
                    except OSError:
                        continue
                    line.put(fd, data, arrival)
                line.deliver()
                line.idle_check()
        finally:
            line._close_frame()
            for child in children:
                child.terminate()
            for child in children:
                child.wait(5)


if __name__ == "__main__":
    main()
