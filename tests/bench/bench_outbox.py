"""Outbox benchmark (issue 5): append and drain throughput and bytes written per 1,000 readings,
in the same run, for three queues on the same disk:

- batigate: the agent's Outbox (WAL, synchronous=FULL, one transaction per batch: the
  committer's 1 s interval is modelled as one commit per 100 messages, alarms none);
- sqlite-per-record: the same table, one committed transaction per enqueue and per ack;
- tinydb: the storage library first suggested for this project (one JSON document per message,
  removed on ack; TinyDB rewrites its whole file at every write).

Bytes written are the process's /proc/self/io write_bytes (page-cache bytes dirtied; the file
system journal is not included). A message carries 10 SenML readings, as a device poll does.
Figures are ratios between queues measured in the same run, never pass/fail.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.store.diskguard import process_write_bytes
from agent.store.outbox import PRIO_TELEMETRY, Outbox

READINGS_PER_MESSAGE = 10
BATCH = 100  # messages per batigate commit: 1 s of a building with ~100 polls per second


def body(i: int) -> dict:
    return {"e": [{"bn": "urn:dev:bgw:gw-bench:vmc-a:", "bt": 1767225600.0 + i, "n": "p0",
                   "u": "Pa", "v": 112.5}] + [{"n": f"p{k}", "u": "Pa", "v": 100 + k}
                                              for k in range(1, READINGS_PER_MESSAGE)]}


@dataclass
class Result:
    name: str
    messages: int
    append_per_s: float
    drain_per_s: float
    bytes_per_1000: float


def measure(name: str, messages: int, append: Callable[[int], None],
            drain: Callable[[], None]) -> Result:
    start_bytes = process_write_bytes() or 0
    started = time.perf_counter()
    for i in range(messages):
        append(i)
    appended = time.perf_counter()
    drain()
    drained = time.perf_counter()
    written = (process_write_bytes() or 0) - start_bytes
    readings = messages * READINGS_PER_MESSAGE
    return Result(name, messages, messages / (appended - started), messages / (drained - appended),
                  written * 1000 / readings)


def bench_batigate(workdir: Path, messages: int) -> Result:
    box = Outbox(workdir / "batigate.db", max_bytes=2**30, commit_interval=1.0, clock=time.time)

    def append(i: int) -> None:
        box.enqueue("dev/vmc-a/tm", body(i), prio=PRIO_TELEMETRY, sess=1)
        if i % BATCH == BATCH - 1:
            box.commit()

    def drain() -> None:
        box.commit()
        while batch := box.peek(32):
            box.ack(batch)  # the uplink's window of 32
            if box.pending or len(box.delivery.acked) >= BATCH:  # the committer's batch
                box.commit()
        box.commit()

    try:
        return measure("batigate (batched WAL)", messages, append, drain)
    finally:
        box.close()


def bench_sqlite_per_record(workdir: Path, messages: int) -> Result:
    db = sqlite3.connect(workdir / "naive.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE q (seq INTEGER PRIMARY KEY, topic TEXT, body BLOB)")

    def append(i: int) -> None:
        db.execute("INSERT INTO q VALUES (?, ?, ?)",
                   (i + 1, "dev/vmc-a/tm", json.dumps(body(i)).encode()))

    def drain() -> None:
        while rows := db.execute("SELECT seq FROM q ORDER BY seq LIMIT 32").fetchall():
            for (seq,) in rows:
                db.execute("DELETE FROM q WHERE seq = ?", (seq,))

    try:
        return measure("sqlite, 1 commit/record", messages, append, drain)
    finally:
        db.close()


def bench_tinydb(workdir: Path, messages: int) -> Result:
    from tinydb import TinyDB  # noqa: PLC0415 - a test dependency, for this comparison only

    db = TinyDB(workdir / "tiny.json")
    table = db.table("q")

    def append(i: int) -> None:
        table.insert({"seq": i + 1, "topic": "dev/vmc-a/tm", "body": body(i)})

    def drain() -> None:
        while docs := table.all()[:32]:
            table.remove(doc_ids=[d.doc_id for d in docs])

    try:
        return measure("tinydb", messages, append, drain)
    finally:
        db.close()


def main(messages: int = 2000, tiny_messages: int = 500) -> list[Result]:
    # a real disk, not tmpfs: write_bytes only counts what goes to a block device
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        workdir = Path(tmp)
        results = [bench_batigate(workdir, messages),
                   bench_sqlite_per_record(workdir, messages),
                   bench_tinydb(workdir, tiny_messages)]
    base = results[0]
    print(f"\nOutbox: {READINGS_PER_MESSAGE} readings per message; batigate commits every "
          f"{BATCH} messages (TinyDB on {tiny_messages} messages: it is quadratic)")
    print(f"{'queue':<26}{'append msg/s':>14}{'drain msg/s':>14}{'bytes/1000 readings':>22}"
          f"{'bytes vs batigate':>19}")
    for r in results:
        ratio = r.bytes_per_1000 / base.bytes_per_1000 if base.bytes_per_1000 else float("nan")
        print(f"{r.name:<26}{r.append_per_s:>14,.0f}{r.drain_per_s:>14,.0f}"
              f"{r.bytes_per_1000:>22,.0f}{ratio:>18.1f}x")
    for r in results[1:]:
        print(f"batigate vs {r.name}: append x{base.append_per_s / r.append_per_s:.1f}, "
              f"drain x{base.drain_per_s / r.drain_per_s:.1f}, "
              f"bytes /{r.bytes_per_1000 / base.bytes_per_1000:.1f}")
    return results


if __name__ == "__main__":
    main()
