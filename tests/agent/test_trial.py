"""The generic trial machine (agent/lifecycle/trial.py) and its watcher (trial_watch.py), through
a policy made here: a file on trial whose old content a rollback puts back. Time is the shared
fake clock; the watcher runs on a real (unserved) Agent, so each outcome is counted where the
backend would see it: `evt` in the outbox and the command's cached final answer.

Proves: commit; rollback at the deadline (at start and by the watcher); a restart mid-trial
resumes the watch, or rolls back when the deadline passed meanwhile; an outcome is reported
exactly once, whichever process ends the trial.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.config import loader as config_mod
from agent.lifecycle.trial import State, Trial, Words
from agent.lifecycle.trial_watch import TrialWatch
from agent.runtime import supervisor
from agent.sdk.clock import SystemClock
from tests.clocks import FakeClock
from tests.commands.conftest import config_doc, request, write

@dataclass(frozen=True, slots=True)
class Swapped:
    cmd_id: str
    deadline: float
    old: str
    by: str | None = None


class Swap(Trial[Swapped, Any]):
    """The smallest policy: `thing` holds the new text; a rollback writes the old one back."""

    kind = "swap"
    record_type = Swapped
    words = Words("swap.apply", "swap.kept", "swap.undone",
                  start_reason="not proven in time (found at start)",
                  deadline_reason="not proven in time")

    def __init__(self, folder: Path, restarts: bool = False) -> None:
        super().__init__(folder / "swap.trial", folder / "swap.outcome")
        self.thing = folder / "thing"
        self.restarts = restarts
        self.resumed: list[str] = []

    def swap(self, text: str, *, cmd_id: str, deadline: float) -> None:
        self.begin(Swapped(cmd_id=cmd_id, deadline=deadline, old=self.thing.read_text()))
        self.thing.write_text(text)

    def restore(self, record: Swapped | None) -> None:
        assert record is not None
        self.thing.write_text(record.old)

    def fields(self, record: Swapped) -> dict[str, Any]:
        return {"old": record.old}

    def result(self, outcome: dict[str, Any], committed: bool) -> dict[str, Any]:
        return {"old": outcome["old"], "kept": committed}

    def start_line(self, record: Swapped) -> str:
        return f"swap {record.cmd_id} rolled back"

    async def resume(self, agent: Any, why: str) -> bool:
        self.resumed.append(why)
        return self.restarts


class Settled:
    """Counts the settle calls (each is one `evt` and one final answer)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, outcome: dict[str, Any], *, op: str, succeeded: bool,
                 result: dict[str, Any]) -> dict[str, Any]:
        self.calls.append({"outcome": outcome, "op": op, "succeeded": succeeded,
                           "result": result})
        return {"id": outcome["cmd"], "status": "succeeded" if succeeded else "failed"}


@pytest.fixture
def clock() -> FakeClock:
    # Now-ish: the command handler checks a request's expiry against this clock.
    return FakeClock(round(time.time()))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "thing").write_text("old")
    return tmp_path


# -- the machine alone --------------------------------------------------------------------------

def test_a_commit_keeps_the_change_and_its_outcome_is_reported_once(folder: Path,
                                                                     clock: FakeClock) -> None:
    trial = Swap(folder)
    assert trial.state(clock()) is State.IDLE
    trial.swap("new", cmd_id="c-1", deadline=clock() + 60)
    assert trial.state(clock()) is State.ON_TRIAL
    clock.advance(10)
    assert trial.commit(now=clock()).cmd_id == "c-1"  # type: ignore[union-attr]
    assert trial.state(clock()) is State.IDLE and (folder / "thing").read_text() == "new"
    assert trial.rollback(reason="late", now=clock()) is None  # nothing on trial any more
    assert (folder / "thing").read_text() == "new"
    ended = clock()
    settled = Settled()
    assert trial.settle_outcome(settled) == {"id": "c-1", "status": "succeeded"}
    assert trial.settle_outcome(settled) is None  # exactly once
    [call] = settled.calls
    assert call["op"] == "swap.apply" and call["succeeded"] is True
    assert call["outcome"] == {"type": "swap.kept", "cmd": "c-1", "old": "old", "ts": ended}
    assert call["result"] == {"old": "old", "kept": True}


def test_past_its_deadline_a_trial_is_rolled_back_at_start_once(folder: Path,
                                                                 clock: FakeClock) -> None:
    trial = Swap(folder)
    trial.swap("new", cmd_id="c-2", deadline=clock() + 60)
    clock.advance(59)
    assert trial.check_at_start(now=clock()) is None  # still in time
    assert (folder / "thing").read_text() == "new"
    clock.advance(1)
    assert trial.state(clock()) is State.DUE
    assert trial.check_at_start(now=clock()) == "swap c-2 rolled back"
    assert (folder / "thing").read_text() == "old"
    assert trial.check_at_start(now=clock()) is None and trial.state(clock()) is State.IDLE
    outcome = trial.take_outcome()
    assert outcome is not None and outcome["type"] == "swap.undone"
    assert outcome["reason"] == "not proven in time (found at start)"


def test_an_unreadable_record_steers_nothing(folder: Path, clock: FakeClock) -> None:
    trial = Swap(folder)
    (folder / "swap.trial").write_text("{half a note")
    assert trial.pending() is None and not (folder / "swap.trial").exists()
    (folder / "swap.trial").write_text(json.dumps({"cmd_id": "c", "deadline": 1}))  # no `old`
    assert trial.state(clock()) is State.IDLE


# -- the watcher, on a real agent ----------------------------------------------------------------

class Fixed(SystemClock):
    """The agent's wall clock is the fake one; its monotonic clock stays real."""

    def __init__(self, fake: FakeClock) -> None:
        self.fake = fake

    def time(self) -> float:
        return self.fake()


@contextlib.contextmanager
def agent_with(tmp_path: Path, clock: FakeClock, trial: Swap) -> Iterator[
        tuple[supervisor.Agent, TrialWatch]]:
    """An agent built from a lab config (not served: no broker), and a watcher of `trial`."""
    path = tmp_path / "gateway.yaml"
    if not path.exists():
        write(tmp_path, config_doc(tmp_path))
    agent = supervisor.Agent(config_mod.load(path), Fixed(clock))
    try:
        yield agent, TrialWatch(agent, settle=agent.commands.settle,
                                kinds=lambda config: {trial.kind: trial})
    finally:
        agent.outbox.close()


def events(agent: supervisor.Agent, kind: str) -> list[dict[str, Any]]:
    agent.outbox.commit()
    return [m.fields() for m in agent.outbox.peek(1000)
            if m.topic == "evt" and m.fields()["type"] == kind]


async def begun(agent: supervisor.Agent, cmd_id: str) -> bytes:
    """A command recorded by the handler under `cmd_id`, standing for the one that began the
    trial; its bytes, to ask again for the final answer."""
    body = json.dumps({**request("ping"), "id": cmd_id}).encode()
    assert (await agent.commands(body))["status"] == "succeeded"  # type: ignore[index]
    return body


async def test_the_watcher_rolls_back_at_the_deadline_and_reports_once(
        folder: Path, clock: FakeClock) -> None:
    trial = Swap(folder)
    with agent_with(folder, clock, trial) as (agent, watch):
        command = await begun(agent, "c-3")
        trial.swap("new", cmd_id="c-3", deadline=clock() + 0.2)  # 0.2 s of real waiting
        await asyncio.wait_for(watch.run(), 3)
        assert (folder / "thing").read_text() == "old"
        assert trial.resumed == ["swap of c-3 rolled back: not proven in time"]
        [event] = events(agent, "swap.undone")
        assert event["cmd"] == "c-3" and event["reason"] == "not proven in time"
        final = await agent.commands(command)
        assert final is not None and final["status"] == "failed" and final["replayed"]
        assert "rolled back: not proven in time" in final["error"]
        await asyncio.wait_for(watch.run(), 3)  # a second pass finds nothing to report
        assert len(events(agent, "swap.undone")) == 1


async def test_a_commit_by_command_ends_the_watch_and_is_reported_once(
        folder: Path, clock: FakeClock) -> None:
    trial = Swap(folder)
    with agent_with(folder, clock, trial) as (agent, watch):
        trial.swap("new", cmd_id="c-4", deadline=clock() + 600)
        running = asyncio.ensure_future(watch.run())
        await asyncio.sleep(0.05)
        assert not running.done()  # waiting for the proof
        assert (await watch.commit("swap")).cmd_id == "c-4"
        await asyncio.wait_for(running, 2)  # the commit ended the watch
        assert (await watch.commit("swap")) is None
        assert len(events(agent, "swap.kept")) == 1 and not events(agent, "swap.undone")
        assert (folder / "thing").read_text() == "new" and trial.resumed == []


async def test_a_restart_mid_trial_resumes_the_watch_or_rolls_back_when_the_deadline_passed(
        folder: Path, clock: FakeClock) -> None:
    first = Swap(folder)
    first.swap("new", cmd_id="c-5", deadline=clock() + 600)
    # The agent stops (restart, power cut): the next one takes the trial up from the record.
    with agent_with(folder, clock, Swap(folder)) as (agent, watch):
        running = asyncio.ensure_future(watch.run())
        await asyncio.sleep(0.05)
        assert not running.done() and first.pending() is not None  # resumed, still on trial
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    clock.advance(600)  # down past the deadline: the next start rolls back at once
    again = Swap(folder, restarts=True)
    with agent_with(folder, clock, again) as (agent, watch):
        await asyncio.wait_for(watch.run(), 2)
        assert (folder / "thing").read_text() == "old" and again.resumed
        # It restarts to run what came back, without a broker: the next start reports it.
        assert again.take_outcome() is not None and not events(agent, "swap.undone")
    with agent_with(folder, clock, Swap(folder)) as (agent, watch):
        reporting = asyncio.ensure_future(watch.run())  # its cmd/res waits for a broker
        try:
            for _ in range(100):
                if events(agent, "swap.undone"):
                    break
                await asyncio.sleep(0.02)
            assert [e["cmd"] for e in events(agent, "swap.undone")] == ["c-5"]
            assert Swap(folder).take_outcome() is None  # settled: no later start repeats it
        finally:
            reporting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporting
