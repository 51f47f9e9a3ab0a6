"""The command handler on validation paths: an agent built from a real config, not running."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import cbor2
import pytest

from agent.runtime import supervisor
from agent.sdk.clock import SystemClock
from agent.commands import CommandHandler
from agent.commands.handler import MAX_WIRE_BYTES
from tests.commands.conftest import request

FUT = int(time.time()) + 3600


async def call(handler: CommandHandler, body: Any) -> dict[str, Any]:
    answer = await handler(json.dumps(body).encode())
    assert answer is not None
    return answer


@pytest.fixture
def handler(agent: supervisor.Agent) -> CommandHandler:
    return CommandHandler(agent, clock=SystemClock())


def events(agent: supervisor.Agent) -> list[dict[str, Any]]:
    agent.outbox.commit()
    return [m.fields() for m in agent.outbox.peek(1000) if m.topic == "evt"]


async def test_ping_succeeds_with_the_id_op_and_code(handler: CommandHandler) -> None:
    body = request("ping")
    answer = await call(handler, body)
    assert answer["id"] == body["id"] and answer["op"] == "ping"
    assert answer["status"] == "succeeded" and answer["code"] == 200
    assert answer["result"]["pong"] is True and "error" not in answer


@pytest.mark.parametrize(("body", "code", "words"), [
    ({"id": "x1", "op": "teleport", "exp": FUT}, 404, "unknown op"),
    ({"id": "x2", "op": "ping"}, 400, "exp: required"),
    ({"id": "x3", "op": "ping", "exp": FUT, "colour": "red"}, 400, "colour: unknown field"),
    ({"id": "x4", "op": 7, "exp": FUT}, 400, "op:"),
    ({"id": "x5", "op": "ping", "exp": "tomorrow"}, 400, "exp"),
    ({"id": "x6", "op": "point.read", "args": {"dev": "vmc-a"}, "exp": FUT}, 400,
     "args.n: required, missing"),
    ({"id": "x7", "op": "point.read", "args": {"dev": "vmc-a", "n": "fan_speed", "x": 1},
      "exp": FUT}, 400, "args.x: unknown field"),
    ({"id": "x8", "op": "point.write", "args": {"dev": "vmc-a", "n": "fan_enable", "v": "on"},
      "exp": FUT}, 400, "args.v"),
    ({"id": "x9", "op": "ping", "args": [], "exp": FUT}, 400, "args"),
    ({"id": "x10", "op": "ping", "exp": 1}, 410, "expired"),
    ({"id": "x11", "op": "ping", "aud": "gw-other", "exp": FUT}, 401, "not this gateway"),
    ({"id": "x12", "op": "point.read", "args": {"dev": "nope", "n": "x"}, "exp": FUT}, 404,
     "unknown device"),
    ({"id": "x13", "op": "point.read", "args": {"dev": "vmc-a", "n": "nope"}, "exp": FUT}, 404,
     "no point"),
    ({"id": "x14", "op": "point.write", "args": {"dev": "vmc-a", "n": "fan_speed", "v": 3},
      "exp": FUT}, 403, "not declared writable"),
    ({"id": "x15", "op": "point.write",
      "args": {"dev": "vmc-a", "n": "pressure_setpoint", "v": 300}, "exp": FUT}, 422,
     "above the maximum"),
    ({"id": "x16", "op": "point.write",
      "args": {"dev": "vmc-a", "n": "pressure_setpoint", "v": True}, "exp": FUT}, 422,
     "must be a number"),
    ({"id": "x17", "op": "point.write", "args": {"dev": "vmc-a", "n": "fan_enable", "v": 1},
      "exp": FUT}, 422, "bool point"),
    ({"id": "x18", "op": "buffer.resend", "args": {"from_seq": 1, "to_seq": 9},
      "exp": FUT}, 501, "not available"),
    ({"id": "x19", "op": "alarm.ack", "args": {"alarm": "a"}, "exp": FUT}, 404, "no rules"),
    ({"id": "x20", "op": "config.confirm", "exp": FUT}, 409, "no config apply"),
    ({"id": "x21", "op": "config.rollback", "exp": FUT}, 409, "no previous config"),
])
async def test_bad_requests_are_rejected_with_a_code_and_a_reason(
        handler: CommandHandler, body: dict[str, Any], code: int, words: str) -> None:
    answer = await call(handler, body)
    assert answer["status"] == "rejected", answer
    assert answer["code"] == code, answer
    assert words in answer["error"], answer
    assert answer["id"] == body["id"]


async def test_exp_far_in_the_future_is_refused_when_the_clock_is_trusted(
        handler: CommandHandler) -> None:
    answer = await call(handler, request("ping", ttl=10 * 86400))
    assert (answer["status"], answer["code"]) == ("rejected", 400)
    assert "ahead" in answer["error"]


async def test_without_a_readable_id_the_answer_says_so_with_a_null_id(
        handler: CommandHandler) -> None:
    for payload in (b"", b"{", b"[1, 2]", b'"ping"', b"\xff\xfe\x00", b'{"op": "ping"}',
                    b'{"id": 5, "op": "ping"}', b'{"id": "", "op": "ping"}'):
        answer = await handler(payload)
        assert answer is not None and answer["id"] is None, payload
        assert answer["status"] == "rejected" and answer["code"] == 400 and answer["error"]


async def test_oversized_and_deeply_nested_requests_are_rejected_with_their_id(
        handler: CommandHandler) -> None:
    big = request("ping", args={"pad": "x" * 20000})
    answer = await call(handler, big)
    assert (answer["id"], answer["code"]) == (big["id"], 413)
    nested: Any = 1
    for _ in range(40):
        nested = {"a": nested}
    deep = request("ping", args={"n": nested})
    answer = await call(handler, deep)
    assert (answer["id"], answer["code"]) == (deep["id"], 400)
    assert "nested" in answer["error"]
    # 200 kB of brackets, under the wire cap: the decoder stops at the depth limit before it
    # reaches the id (decoded after the body), so the answer has no id
    answer = await handler(b'{"x": ' + b"[" * 100000 + b"]" * 100000 + b', "id": "deep"}')
    assert answer is not None and (answer["id"], answer["code"]) == (None, 400)
    assert "too deeply nested" in answer["error"]
    # beyond the wire cap nothing is parsed at all
    answer = await handler(b'{"id": "huge", "x": "' + b"x" * MAX_WIRE_BYTES + b'"}')
    assert answer is not None and (answer["id"], answer["code"]) == (None, 413)


async def test_duplicate_keys_nan_and_lone_surrogates_are_refused(
        handler: CommandHandler) -> None:
    for payload in (b'{"id": "d1", "op": "ping", "op": "agent.restart", "exp": 9e9}',
                    b'{"id": "d2", "op": "ping", "exp": NaN}',
                    b'{"id": "d3", "op": "ping", "by": "\\ud800", "exp": 9e9}'):
        answer = await handler(payload)
        assert answer is not None and answer["status"] == "rejected", payload
        assert answer["code"] == 400


async def test_cbor_requests_work_and_cbor_only_types_are_refused(
        handler: CommandHandler) -> None:
    body = request("ping")
    answer = await handler(cbor2.dumps(body))
    assert answer is not None and (answer["id"], answer["status"]) == (body["id"], "succeeded")
    odd = request("ping", args={"when": b"\x00\x01"})
    answer = await handler(cbor2.dumps(odd))
    assert answer is not None and (answer["id"], answer["code"]) == (odd["id"], 400)
    cyclic = bytes([0xd8, 28, 0x81, 0xd8, 29, 0x00])  # a list that contains itself
    answer = await handler(cyclic)
    assert answer is not None and answer["code"] == 400


async def test_a_replayed_command_is_answered_from_the_cache_not_run_again(
        handler: CommandHandler, agent: supervisor.Agent) -> None:
    body = request("maintenance.set", {"dev": "vmc-a", "until": time.time() + 3600})
    first = await call(handler, body)
    assert first["status"] == "succeeded"
    again = await call(handler, body)
    assert again["replayed"] is True
    assert {k: v for k, v in again.items() if k != "replayed"} == first
    assert len([e for e in events(agent) if e["type"] == "maintenance.set"]) == 1
    reused = dict(body, args={"dev": "vmc-a", "until": None})
    clash = await call(handler, reused)
    assert (clash["status"], clash["code"]) == ("rejected", 409)


async def test_the_replay_cache_survives_a_restart(config_path: Path) -> None:
    from agent.config import loader as config_mod

    body = request("maintenance.set", {"dev": "vmc-a", "until": time.time() + 3600})
    first_agent = supervisor.Agent(config_mod.load(config_path), SystemClock())
    first = await call(CommandHandler(first_agent), body)
    first_agent.outbox.close()
    second_agent = supervisor.Agent(config_mod.load(config_path), SystemClock())
    try:
        again = await call(CommandHandler(second_agent), body)
        assert again["replayed"] is True and again["result"] == first["result"]
        # the first agent's event is still in the outbox (never sent); no second one was added
        assert len([e for e in events(second_agent) if e["type"] == "maintenance.set"]) == 1
    finally:
        second_agent.outbox.close()


async def test_expired_and_unauthenticated_rejections_are_not_cached(
        handler: CommandHandler) -> None:
    stale = request("ping", ttl=-3600)
    assert (await call(handler, stale))["code"] == 410
    fresh = dict(stale, exp=int(time.time() + 60))
    assert (await call(handler, fresh))["status"] == "succeeded"


async def test_the_cache_is_bounded(agent: supervisor.Agent) -> None:
    handler = CommandHandler(agent)
    handler.cache.max_entries = 10
    for _ in range(30):
        await call(handler, request("ping", ttl=-30))  # expired... but inside the skew
    assert len(handler.cache) <= 10


async def test_config_get_masks_secrets(handler: CommandHandler) -> None:
    answer = await call(handler, request("config.get"))
    text = json.dumps(answer)
    assert "hunter2" not in text
    assert answer["result"]["config"]["mqtt"]["password"] == "***"
    assert answer["result"]["digest"] == handler.agent.config.digest


async def test_buffer_stats_health_and_logs(handler: CommandHandler) -> None:
    stats = await call(handler, request("buffer.stats"))
    assert stats["result"]["depth"] == 0  # a fresh buffer
    for n in range(3):
        handler.agent.pipeline.event({"type": "clock.jump", "delta": n, "synced": True})
    stats = await call(handler, request("buffer.stats"))
    assert (stats["result"]["depth"], stats["result"]["events"]) == (3, 3)
    health = await call(handler, request("health"))
    assert {"cpu", "memory", "disk", "clock_synced", "outbox_depth"} <= set(health["result"])
    level = await call(handler, request("log.level", {"level": "debug", "logger": "batigate.x"}))
    assert level["result"]["level"] == "debug"
    assert logging.getLogger("batigate.x").level == logging.DEBUG
    logging.getLogger("batigate.x").warning("a line to find again")
    lines = await call(handler, request("log.get", {"lines": 5}))
    assert any("a line to find again" in line for line in lines["result"]["lines"])
    warnings_only = await call(handler, request("log.get", {"lines": 50, "level": "error"}))
    assert not any("a line to find again" in line for line in warnings_only["result"]["lines"])
    logging.getLogger("batigate.x").setLevel(logging.NOTSET)


async def test_every_command_goes_to_the_audit_trail(handler: CommandHandler,
                                                     agent: supervisor.Agent) -> None:
    ok = request("ping", by="alice@ops")
    bad = request("point.write", {"dev": "vmc-a", "n": "fan_speed", "v": 1}, by="mallory")
    await call(handler, ok)
    await call(handler, bad)
    trail = (await call(handler, request("audit.get", {"lines": 10})))["result"]["entries"]
    mine = {e["id"]: e for e in trail}
    assert mine[ok["id"]]["by"] == "alice@ops" and mine[ok["id"]]["status"] == "succeeded"
    assert mine[bad["id"]]["code"] == 403 and mine[bad["id"]]["op"] == "point.write"
    assert mine[ok["id"]]["signed"] is False
    # On disk: what changed or tried to change something (the write, audit.get); an anonymous
    # ping is noise, kept in memory only (issue #16: noise must not cost or evict the record).
    rows = sqlite3.connect(agent.config.buffer.path).execute(
        "SELECT id FROM cmd_audit").fetchall()
    assert {bad["id"]} <= {r[0] for r in rows} and ok["id"] not in {r[0] for r in rows}


async def test_point_commands_need_running_drivers(handler: CommandHandler) -> None:
    for op in ("point.read", "poll.now"):
        args = {"dev": "vmc-a", "n": "fan_speed"} if op == "point.read" else {"dev": "vmc-a"}
        answer = await call(handler, request(op, args))
        assert (answer["status"], answer["code"]) == ("failed", 503), answer


async def test_maintenance_without_rules_is_recorded_as_an_event(
        handler: CommandHandler, agent: supervisor.Agent) -> None:
    until = time.time() + 600
    answer = await call(handler, request("maintenance.set", {"dev": "vmc-a", "until": until},
                                         by="tech"))
    assert answer["status"] == "succeeded" and answer["result"]["rules"] is False
    event = [e for e in events(agent) if e["type"] == "maintenance.set"][-1]
    assert event["dev"] == "vmc-a" and event["until"] == until and event["by"] == "tech"
    past = await call(handler, request("maintenance.set", {"dev": "vmc-a", "until": 5}))
    assert past["code"] == 422


async def test_agent_restart_asks_the_supervisor_after_the_answer(
        handler: CommandHandler, agent: supervisor.Agent) -> None:
    answer = await call(handler, request("agent.restart"))
    assert (answer["status"], answer["code"]) == ("accepted", 202)
    event = agent.restart_requested  # type: ignore[attr-defined]
    assert not event.is_set()  # not yet: the answer must go out first
    await asyncio.wait_for(event.wait(), 3)


async def test_a_bug_in_an_operation_is_one_failed_answer(handler: CommandHandler,
                                                          agent: supervisor.Agent) -> None:
    agent.outbox.stats = None  # type: ignore[assignment]  # buffer.stats now raises TypeError
    answer = await call(handler, request("buffer.stats"))
    assert (answer["status"], answer["code"]) == ("failed", 500)
    assert "internal error" in answer["error"]


def test_operations_cover_the_issue() -> None:
    wanted = {"ping", "rebirth", "point.read", "point.write", "poll.now", "config.get",
              "config.apply", "config.confirm", "config.rollback", "alarm.ack",
              "maintenance.set", "buffer.stats", "buffer.resend", "log.level", "log.get",
              "agent.restart", "health"}
    assert wanted <= set(CommandHandler.operations())


async def test_alarm_ack_and_maintenance_go_to_the_rule_engine(tmp_path: Path) -> None:
    from agent.config import loader as config_mod
    from tests.commands.conftest import config_doc, write

    rule = {"id": "vmc-a-low", "type": "threshold", "point": "vmc-a/exhaust_pressure",
            "below": 50, "clear_above": 60}
    agent = supervisor.Agent(config_mod.load(write(tmp_path, config_doc(tmp_path,
                                                                         rules=[rule]))),
                             SystemClock())
    try:
        assert agent.engine is not None
        handler = CommandHandler(agent)
        unknown = await call(handler, request("alarm.ack", {"alarm": "nope"}))
        assert (unknown["status"], unknown["code"]) == ("rejected", 404)
        acked = await call(handler, request("alarm.ack", {"alarm": "vmc-a-low", "note": "seen"},
                                            by="tech"))
        assert acked["status"] == "succeeded", acked
        until = time.time() + 600
        answer = await call(handler, request("maintenance.set", {"dev": "vmc-a", "until": until}))
        assert answer["result"]["rules"] is True
        assert agent.engine.maintenance() == {"vmc-a": until}
        ended = await call(handler, request("maintenance.set", {"dev": "vmc-a", "until": None}))
        assert ended["status"] == "succeeded" and agent.engine.maintenance() == {}
    finally:
        agent.outbox.close()
