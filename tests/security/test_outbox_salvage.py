"""A damaged outbox file (truncated, bad header, two changed bytes in a row, garbage in the middle)
never keeps the gateway dark: the file is set aside, what is readable is carried over in order,
the loss is reported, and a row that cannot be decoded is quarantined, never retried forever."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from agent.store import sqlite_pages
from agent.store.outbox import PRIO_TELEMETRY, Outbox
from tests.integration.test_schemas import assert_valid
from tests.broker import Mosquitto
from tests.faults.harness import AgentProcess, config, devices, observing

ROWS = 2000
PAGE = 4096


def open_outbox(path: Path) -> Outbox:
    return Outbox(path, max_bytes=10**9, commit_interval=1.0, clock=time.time)


def filled(tmp_path: Path) -> Path:
    """An outbox file of ROWS telemetry rows (about 100 pages), closed cleanly (no WAL left)."""
    path = tmp_path / "outbox.db"
    box = open_outbox(path)
    box.next_session()
    for i in range(ROWS):
        box.enqueue("dev/a/tm", {"e": [{"n": "x", "v": i}], "pad": f"ROW-{i:05d}" + "." * 150},
                    prio=PRIO_TELEMETRY, sess=1)
    box.commit()
    box.close()
    assert not path.with_name("outbox.db-wal").exists()
    return path


def drain(box: Outbox) -> list[int]:
    seqs: list[int] = []
    while batch := box.peek(500):
        seqs += [m.seq for m in batch]
        for message in batch:
            message.fields()  # everything offered decodes
        box.ack(batch)
    return seqs


def test_a_truncated_file_is_moved_aside_and_its_first_rows_salvaged(tmp_path: Path) -> None:
    path = filled(tmp_path)
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(size // 2)
    box = open_outbox(path)
    report = box.salvage
    assert report is not None and Path(report.moved_to).exists()
    assert Path(report.moved_to).stat().st_size == size // 2  # kept as it was, for diagnosis
    seqs = drain(box)
    assert seqs == sorted(seqs) and seqs[0] == 1 and 0 < len(seqs) < ROWS
    assert report.salvaged == len(seqs)
    # what is missing is reported as seq ranges
    missing = set(range(1, ROWS + 1)) - set(seqs)
    listed = {s for first, last in report.lost_ranges for s in range(first, last + 1)}
    assert missing <= listed, (sorted(missing)[:5], report.lost_ranges)
    assert box.stats()["salvage"]["moved_to"] == report.moved_to
    # the counter goes on where it was: no seq is ever reused
    assert box.enqueue("evt", {"type": "x"}, prio=1, sess=2)[0] == ROWS + 1


def test_a_bad_header_still_lets_the_outbox_start(tmp_path: Path) -> None:
    path = filled(tmp_path)
    with path.open("r+b") as f:
        f.write(b"this is no sqlite")
    box = open_outbox(path)
    # SQLite refuses the file; its pages are read directly: every row comes back, in order
    assert box.salvage is not None and "not a database" in box.salvage.reason
    assert box.salvage.salvaged == ROWS and box.salvage.lost == 0
    assert box.next_session() == 2  # the session counter was read back too
    assert box.enqueue("evt", {"type": "x"}, prio=1, sess=2)[0] == ROWS + 1
    assert drain(box) == [ROWS + 1, *range(1, ROWS + 1)]  # the event first, then telemetry


def test_garbage_in_the_middle_loses_only_those_pages(tmp_path: Path) -> None:
    path = filled(tmp_path)
    pages = path.stat().st_size // PAGE
    with path.open("r+b") as f:
        f.seek(PAGE * (pages // 2))
        f.write(os.urandom(3 * PAGE))
    box = open_outbox(path)
    report = box.salvage
    assert report is not None, "garbage in the middle must not run on silently"
    seqs = drain(box)
    assert seqs == sorted(seqs)
    assert seqs[0] == 1 and seqs[-1] == ROWS  # both ends survive
    assert 0 < report.lost < 200 and report.salvaged == len(seqs) == ROWS - report.lost
    assert len(report.lost_ranges) == 1, report.lost_ranges


def test_two_changed_bytes_in_a_row_quarantine_that_row_only(tmp_path: Path) -> None:
    path = filled(tmp_path)
    data = bytearray(path.read_bytes())
    at = data.index(b'"ROW-01000')
    data[at - 1: at + 1] = b"\xff\x00"  # the JSON around it no longer parses
    path.write_bytes(bytes(data))
    box = open_outbox(path)
    assert box.salvage is None  # the file itself is sound
    seqs = drain(box)
    assert 1001 not in seqs and len(seqs) == ROWS - 1
    assert box.quarantined == 1 and box.stats()["quarantined"] == 1
    box.commit()
    box.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT seq FROM quarantine").fetchall() == [(1001,)]  # kept, not retried
    db.close()
    box = open_outbox(path)
    assert drain(box) == []  # after a restart too


@pytest.mark.timeout(90)
async def test_a_real_agent_starts_on_a_truncated_outbox_and_reports_the_loss(
        tmp_path: Path, building: tuple, broker: Mosquitto) -> None:
    _, modbus_port = building
    path = filled(tmp_path)  # the outbox of the agent's config (buffer.path = tmp/outbox.db)
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size * 2 // 3)
    config_path = config(tmp_path, broker, modbus_port, devices=devices("500ms", (1,)),
                         health={"interval": "500ms"},
                         buffer={"backlog_rate": 0})  # unpaced: the test need not wait
    async with AgentProcess(config_path, tmp_path / "agent.log") as agent:
        async with observing(broker.port) as observer:
            await agent.start()
            await observer.wait_for(lambda ms: any(
                m.body.get("type") == "buffer.salvaged" for m in ms), 30)
            await observer.wait_for(lambda ms: any(
                m.topic.endswith("/health") and m.body["outbox"]["salvage"] for m in ms), 15)
            [event] = [m.body for m in observer.messages
                       if m.body.get("type") == "buffer.salvaged"]
            await observer.wait_for(lambda ms: len(
                {m.body["seq"] for m in ms if m.topic.endswith("/dev/a/tm")})
                >= event["salvaged"], 40)  # the backlog is paced
            assert agent.alive
            assert await agent.stop() == 0
    assert_valid("evt.json", event)
    assert_valid("health.json", [m.body for m in observer.messages if m.topic.endswith("/health")][-1])
    assert event["salvaged"] > 0 and event["lost"] > 0 and event["lost_ranges"]
    assert Path(event["moved_to"]).exists()
    delivered = {m.body["seq"] for m in observer.messages if m.topic.endswith("/dev/a/tm")}
    assert len(delivered) == event["salvaged"]  # every salvaged row reached the broker


def test_rows_only_in_the_wal_are_salvaged_too(tmp_path: Path) -> None:
    """A power cut leaves committed rows in the -wal file; the main file's header then rots."""
    live = tmp_path / "live"
    box = open_outbox(live / "outbox.db")
    box.next_session()
    for i in range(300):
        box.enqueue("dev/a/tm", {"e": [{"n": "x", "v": i}]}, prio=PRIO_TELEMETRY, sess=1)
    box.commit()
    cut = tmp_path / "cut"
    cut.mkdir()
    for name in ("outbox.db", "outbox.db-wal"):  # what the card holds at the power cut
        (cut / name).write_bytes((live / name).read_bytes())
    box.close()
    assert (cut / "outbox.db-wal").stat().st_size > 0
    main = cut / "outbox.db"
    main.write_bytes(os.urandom(main.stat().st_size))  # the whole main file rotted
    # The page reader finds every row in the WAL's frames...
    found = {rowid for rowid, values in sqlite_pages.leaf_rows(main) if len(values) >= 8}
    assert found >= set(range(1, 301))
    # ...and SQLite itself reads the WAL's copy of every page: the outbox opens as it was.
    assert drain(open_outbox(main)) == list(range(1, 301))
