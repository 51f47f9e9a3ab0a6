"""One trial state machine: a change runs on probation and stays only if it proves itself in time.

A config apply (until `config.confirm`), an agent update (until the new release reaches the
broker) and a rotated certificate (until the agent connects with it) are the same story; each is a
small policy (`config_trial.py`, `update_trial.py`, `cert_trial.py`) of this class:

    IDLE ─begin─► ON_TRIAL ─commit──────────────────────► committed ───┐
                     │ (a command may also roll back)                   ├─ settle_outcome:
                     └─deadline─► DUE ─rollback(reason)─► rolled_back ───┘  reported once

Two notes on disk beside what is on trial (both written with `durable.write_atomic`, so a power
cut leaves the old or the new note, never half of one):

    record   JSON of the policy's record (cmd_id, deadline, by, and what the policy needs to undo)
    outcome  how the last trial ended (`type`, `cmd`, the policy's fields, `ts`, `reason`), kept
             until it has been reported: `settle_outcome` turns it into the command's final
             answer and an `evt`, then forgets it, so it is reported exactly once

Files, not database rows: `check_at_start` runs before the config (and so the database path) is
trusted, which is what rolls back a change that makes the agent crash before its watcher could
run. The running agent's side (waiting for the proof or the deadline) is `trial_watch.py`.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from agent.sdk.durable import read_note, write_atomic

log = logging.getLogger(__name__)


class Record(Protocol):
    """What every policy's record holds (a frozen dataclass, persisted as JSON)."""

    cmd_id: str  # the command that began the trial: its final answer is the outcome
    deadline: float  # epoch seconds
    by: str | None


R = TypeVar("R", bound=Record)
# The agent the policies work on: the AgentContext, which names this module (its `Trials.trial`),
# so the machine cannot import it and takes it as a type parameter instead.
A = TypeVar("A")
# (outcome, op=, succeeded=, result=) -> the final answer (CommandHandler.settle)
Settle = Callable[..., dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Words:
    """What a policy's outcomes are called on the wire (DESIGN §3: stable), and why it rolls back
    by itself."""

    op: str  # the command whose final answer the outcome becomes
    committed: str  # outcome type when the change stays, e.g. "config.confirmed"
    rolled_back: str  # outcome type when it was undone
    start_reason: str  # why `check_at_start` rolls back
    deadline_reason: str  # why the watcher rolls back at the deadline


class State(enum.Enum):
    IDLE = "idle"  # nothing on trial
    ON_TRIAL = "on_trial"  # a record, its deadline ahead
    DUE = "due"  # a record whose deadline has passed: only a rollback is left


class Trial(Generic[R, A]):
    """The machine; a policy sets the class attributes and overrides the hooks below."""

    kind: ClassVar[str]  # the name the watcher and the Trials protocol know it by
    record_type: ClassVar[type]
    words: ClassVar[Words]
    commit_on_connect: ClassVar[bool] = False  # proven by a broker session (else by a command)
    stale_restarts: ClassVar[bool] = False  # a stale trial rolled back needs a fresh start
    restores_without_trial: ClassVar[bool] = False  # `rollback` restores even with no record

    def __init__(self, record_path: Path, outcome_path: Path) -> None:
        self.record_path = record_path
        self.outcome_path = outcome_path

    # -- hooks ------------------------------------------------------------------------------

    def restore(self, record: R | None) -> None:
        """Put back what was there before the trial (the record is None only for a policy with
        `restores_without_trial`)."""
        raise NotImplementedError

    def fields(self, record: R) -> dict[str, Any]:
        """The policy's own fields of the outcome (after `type` and `cmd`)."""
        raise NotImplementedError

    def result(self, outcome: dict[str, Any], committed: bool) -> dict[str, Any]:
        """The `result` of the command's final answer."""
        raise NotImplementedError

    def start_line(self, record: R) -> str:
        """The log line of `check_at_start` when it rolled `record` back."""
        raise NotImplementedError

    def describe(self, record: R) -> str:
        """What is on trial, for the log and the restart reason."""
        return f"{self.kind} of {record.cmd_id}"

    def stale(self, agent: A, record: R) -> str | None:
        """Why the running agent is not the one on trial (then it is rolled back at once)."""
        return None

    async def resume(self, agent: A, why: str) -> bool:
        """After a rollback by the watcher: run what was put back. True when a restart does it
        (the outcome is then left for the next start to report, unless the broker is there)."""
        raise NotImplementedError

    def unreadable(self, exc: Exception) -> R | None:
        """A record that cannot be read. By default: one this process may not read (a technician's
        `batigate run`) is left alone; one that does not parse is forgotten (nothing
        half-understood steers)."""
        if isinstance(exc, OSError):
            log.error("cannot read %s: %s", self.record_path, exc)
            return None
        log.error("unreadable %s (%s): ignored", self.record_path, exc)
        self.record_path.unlink(missing_ok=True)
        return None

    # -- the machine ------------------------------------------------------------------------

    def begin(self, record: R) -> None:
        """ON_TRIAL from now: written before the change itself, so a crash at any later step
        ends in a rollback at most."""
        write_atomic(self.record_path, json.dumps(asdict(record)).encode())  # type: ignore[call-overload]

    def pending(self) -> R | None:
        try:
            return self.record_type(**json.loads(self.record_path.read_bytes()))  # type: ignore[no-any-return]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            return self.unreadable(exc)

    def state(self, now: float) -> State:
        record = self.pending()
        if record is None:
            return State.IDLE
        return State.ON_TRIAL if now < record.deadline else State.DUE

    def commit(self, *, now: float) -> R | None:
        """The change proved itself: it stays. None when nothing was on trial."""
        record = self.pending()
        if record is not None:
            self._record_outcome(record, self.words.committed, None, now)
            self.record_path.unlink(missing_ok=True)
        return record

    def rollback(self, *, reason: str, now: float) -> R | None:
        """What was there before comes back; returns the trial this ended, if any. What runs
        the restored state (a live reload, a restart) is the caller's."""
        record = self.pending()
        if record is None and not self.restores_without_trial:
            return None
        self.restore(record)
        if record is not None:
            self._record_outcome(record, self.words.rolled_back, reason, now)
            self.record_path.unlink(missing_ok=True)
            log.warning("%s rolled back: %s", self.describe(record), reason)
        return record

    def check_at_start(self, *, now: float) -> str | None:
        """Before anything else runs: roll back a trial whose deadline has passed (the change
        crashed or hung the agent, or never proved itself). A line for the log when it acted."""
        record = self.pending()
        if record is None or now < record.deadline:
            return None
        self.rollback(reason=self.words.start_reason, now=now)
        return self.start_line(record)

    def _record_outcome(self, record: R, kind: str, reason: str | None, now: float) -> None:
        body: dict[str, Any] = {"type": kind, "cmd": record.cmd_id, **self.fields(record),
                                "ts": round(now, 3)}
        if reason:
            body["reason"] = reason
        write_atomic(self.outcome_path, json.dumps(body).encode())

    def take_outcome(self) -> dict[str, Any] | None:
        """The outcome not reported yet (`settle_outcome` reports it and forgets it)."""
        return read_note(self.outcome_path)

    def forget_outcome(self) -> None:
        self.outcome_path.unlink(missing_ok=True)

    def settle_outcome(self, settle: Settle) -> dict[str, Any] | None:
        """The outcome becomes the command's final answer and an `evt` (`settle` does both,
        durably), then is forgotten: reported once. Returns the final answer for `cmd/res`."""
        outcome = self.take_outcome()
        if outcome is None:
            return None
        committed = outcome.get("type") == self.words.committed
        final = settle(outcome, op=self.words.op, succeeded=committed,
                       result=self.result(outcome, committed))
        self.forget_outcome()
        return final
