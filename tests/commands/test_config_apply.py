"""config.apply / confirm / rollback: atomic write, previous version kept, restart requested,
automatic rollback unless confirmed, outcome reported (evt + the apply's cached answer)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import yaml

from agent.config import loader as config_mod
from agent.runtime import supervisor
from agent.sdk.clock import SystemClock
from agent.commands import CommandHandler
from agent.lifecycle.config_trial import ConfigTrial, digest
from tests.commands.conftest import config_doc, request


class ShiftedClock(SystemClock):
    def __init__(self, shift: float) -> None:
        self.shift = shift

    def time(self) -> float:
        return super().time() + self.shift


async def send(handler: CommandHandler, body: dict[str, Any]) -> dict[str, Any]:
    answer = await handler(json.dumps(body).encode())
    assert answer is not None
    return answer


def new_text(tmp_path: Path, **change: Any) -> str:
    """A config that changes a section applied by a restart (the broker session's)."""
    doc = config_doc(tmp_path)
    doc["mqtt"]["reconnect_max"] = "2s"
    doc.update(change)
    return yaml.safe_dump(doc, sort_keys=False)


def evt(agent: supervisor.Agent, kind: str) -> list[dict[str, Any]]:
    agent.outbox.commit()
    return [m.fields() for m in agent.outbox.peek(1000)
            if m.topic == "evt" and m.fields()["type"] == kind]


async def test_an_invalid_config_is_refused_with_every_problem(handler_agent: Any) -> None:
    handler, _ = handler_agent
    answer = await send(handler, request("config.apply", {"config": "gateway: {id: Bad}\n"}))
    assert (answer["status"], answer["code"]) == ("rejected", 422)
    problems = answer["result"]["problems"]
    assert any("gateway.id" in p for p in problems) and any("mqtt" in p for p in problems)


async def test_the_gateway_id_cannot_change_and_the_same_config_is_a_no_op(
        handler_agent: Any, tmp_path: Path, config_path: Path) -> None:
    handler, _ = handler_agent
    other = new_text(tmp_path, gateway={"id": "gw-else", "site": "site-a"})
    answer = await send(handler, request("config.apply", {"config": other}))
    assert answer["code"] == 422 and "gateway.id" in answer["error"]
    same = await send(handler, request("config.apply", {"config": config_path.read_text()}))
    assert same["status"] == "succeeded" and same["result"]["changed"] is False


async def test_apply_writes_atomically_keeps_the_previous_and_asks_for_a_restart(
        handler_agent: Any, tmp_path: Path, config_path: Path) -> None:
    handler, agent = handler_agent
    before = config_path.read_text()
    text = new_text(tmp_path)
    body = request("config.apply", {"config": text, "confirm_within": 60}, by="ops")
    answer = await send(handler, body)
    assert (answer["status"], answer["code"]) == ("in_progress", 202), answer
    assert config_path.read_text() == text
    assert (tmp_path / "gateway.yaml.prev").read_text() == before
    pending = ConfigTrial(config_path).pending()
    assert pending is not None and pending.cmd_id == body["id"]
    assert pending.digest == answer["result"]["digest"] == config_mod.load(config_path).digest
    assert not list(tmp_path.glob("*.tmp"))
    await asyncio.wait_for(agent.restart_requested.wait(), 3)
    second = await send(handler, request("config.apply", {"config": new_text(
        tmp_path, log_level="debug")}))
    assert second["code"] == 409
    early = await send(handler, request("config.confirm"))
    assert early["code"] == 409 and "not running yet" in early["error"]


async def test_a_confirmed_config_stays_and_the_apply_answer_becomes_succeeded(
        handler_agent: Any, tmp_path: Path, config_path: Path) -> None:
    handler, agent = handler_agent
    apply = request("config.apply", {"config": new_text(tmp_path), "confirm_within": 60})
    await send(handler, apply)
    agent.outbox.close()
    restarted = supervisor.Agent(config_mod.load(config_path), SystemClock())
    try:
        after = restarted.commands  # the handler the running agent wires
        probation = asyncio.ensure_future(restarted.trials.run())
        await asyncio.sleep(0.05)
        assert not probation.done()
        answer = await send(after, request("config.confirm", by="ops"))
        assert answer["status"] == "succeeded", answer
        await asyncio.wait_for(probation, 2)
        assert ConfigTrial(config_path).pending() is None
        assert config_path.read_text() == new_text(tmp_path)
        assert evt(restarted, "config.confirmed")[0]["cmd"] == apply["id"]
        final = await send(after, apply)
        assert final["replayed"] is True and final["status"] == "succeeded"
        assert not getattr(restarted, "restart_requested", asyncio.Event()).is_set()
    finally:
        restarted.outbox.close()


async def test_without_confirmation_the_previous_config_comes_back_by_itself(
        config_path: Path, tmp_path: Path) -> None:
    before = config_path.read_text()
    # The apply happened "29.6 s ago" with 30 s to confirm: the restarted agent has 0.4 s.
    agent = supervisor.Agent(config_mod.load(config_path), ShiftedClock(-29.6))
    apply = request("config.apply", {"config": new_text(tmp_path), "confirm_within": 30})
    assert (await send(agent.commands, apply))["status"] == "in_progress"
    agent.outbox.close()
    restarted = supervisor.Agent(config_mod.load(config_path), SystemClock())
    try:
        await asyncio.wait_for(restarted.trials.run(), 3)
        assert config_path.read_text() == before
        assert (tmp_path / "gateway.yaml.rejected").read_text() == new_text(tmp_path)
        assert ConfigTrial(config_path).pending() is None
        await asyncio.wait_for(restarted.restart_requested.wait(), 3)
        # No broker, and a restart runs the restored file: that start reports the outcome.
        assert evt(restarted, "config.rolled_back") == []
    finally:
        restarted.outbox.close()
    again = supervisor.Agent(config_mod.load(config_path), SystemClock())
    watcher = asyncio.ensure_future(again.trials.run())  # its cmd/res waits for a broker
    try:
        for _ in range(100):
            if rolled := evt(again, "config.rolled_back"):
                break
            await asyncio.sleep(0.02)
        assert len(rolled) == 1 and rolled[0]["cmd"] == apply["id"]
        assert "in time" in rolled[0]["reason"]
        final = await send(again.commands, apply)
        assert (final["status"], final["code"]) == ("failed", 500) and final["replayed"]
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        again.outbox.close()


def test_a_config_that_crashes_the_agent_is_rolled_back_at_the_next_start(
        config_path: Path, tmp_path: Path) -> None:
    before = config_path.read_text()
    trial = ConfigTrial(config_path)
    trial.stage(new_text(tmp_path), confirm_within=30, now=time.time() - 60, cmd_id="c1", by=None)
    assert trial.check_at_start(now=time.time() - 45) is None  # still in time
    line = trial.check_at_start(now=time.time())
    assert line is not None and "c1" in line
    assert config_path.read_text() == before
    assert trial.take_outcome()["type"] == "config.rolled_back"  # type: ignore[index]


def test_power_lost_while_staging_leaves_the_old_file_in_force(config_path: Path) -> None:
    before = config_path.read_text()
    (config_path.parent / "gateway.yaml.prev").write_text("an older config\n")
    pending = {"cmd_id": "c2", "digest": "0" * 16, "prev_digest": digest(before),
               "deadline": 0.0, "by": None}
    (config_path.parent / "gateway.yaml.pending").write_text(json.dumps(pending))
    ConfigTrial(config_path).check_at_start(now=time.time())
    assert config_path.read_text() == before  # not the older .prev


async def test_rollback_command_restores_the_previous_file(handler_agent: Any,
                                                           config_path: Path) -> None:
    handler, agent = handler_agent
    (config_path.parent / "gateway.yaml.prev").write_text("previous: true\n")
    current = config_path.read_text()
    answer = await send(handler, request("config.rollback"))
    assert (answer["status"], answer["code"]) == ("in_progress", 202)
    assert config_path.read_text() == "previous: true\n"
    assert (config_path.parent / "gateway.yaml.rejected").read_text() == current
    await asyncio.wait_for(agent.restart_requested.wait(), 3)
