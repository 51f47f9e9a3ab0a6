"""Agent updates, the trial: a new release runs on probation until it proves healthy, otherwise
the previous one comes back by itself (images/README.md, "Updates").

    <releases>/trial.json    the release on trial: command, version, links, deadline
    <releases>/outcome.json  how the last update ended, until a running agent has reported it

Two places act on a trial:

- `check_at_start` and `enter_current`, called by `batigate run` before anything else. systemd
  always starts the built-in agent (the venv of the image), so this code runs even when the new
  release cannot so much as import: once the deadline has passed, `current` goes back to
  `previous`. Then the built-in agent execs the release in force; the PID stays, so systemd's
  notify socket and watchdog follow without any change to the unit.
- `agent/commands/ops/update.watch`, in the running agent: it confirms the trial once the broker
  took its birth, rolls back at the deadline, and reports the outcome on `cmd/res` and `evt`.

Files are written like config applies (`durable.write_atomic`: temp + fsync + rename), and the
trial note is written before the switch, so a power cut at any step ends in a rollback at most.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agent.sdk.durable import read_note, write_atomic
from agent.i18n import t
from agent.lifecycle.update import set_link

log = logging.getLogger(__name__)

TRIAL = "trial.json"
OUTCOME = "outcome.json"
EXEC_GUARD = "BATIGATE_RELEASE"  # set before the exec: the release started so never execs again


@dataclass(frozen=True, slots=True)
class Trial:
    cmd_id: str
    version: str
    release: str  # link text of the release on trial (what `current` says)
    previous: str  # link text a rollback puts back in `current`
    deadline: float  # epoch seconds
    by: str | None = None


def begin(releases: Path, trial: Trial) -> None:
    write_atomic(releases / TRIAL, json.dumps(asdict(trial)).encode())


def pending(releases: Path) -> Trial | None:
    try:
        return Trial(**json.loads((releases / TRIAL).read_bytes()))
    except FileNotFoundError:
        return None
    except OSError as exc:  # e.g. a technician's `batigate run` that may not read the folder
        log.error("cannot read %s: %s", releases / TRIAL, exc)
        return None
    except (ValueError, TypeError) as exc:
        # Unreadable: keep nothing half-understood, but never leave an unproven release in force.
        log.error("unreadable %s (%s): going back to the previous release", releases / TRIAL, exc)
        _restore_previous(releases)
        (releases / TRIAL).unlink(missing_ok=True)
        return None


def confirm(releases: Path, *, now: float) -> Trial | None:
    """The release on trial is healthy: it stays. None when nothing was on trial."""
    trial = pending(releases)
    if trial is not None:
        _record(releases, trial, "update.succeeded", None, now)
        (releases / TRIAL).unlink()
    return trial


def rollback(releases: Path, *, reason: str, now: float) -> Trial | None:
    """`current` back to what it was before the trial; the agent must then restart."""
    trial = pending(releases)
    if trial is None:
        return None
    _restore_previous(releases, trial.previous)
    _record(releases, trial, "update.rolled_back", reason, now)
    (releases / TRIAL).unlink()
    log.warning("update %s rolled back to %s: %s", trial.version, trial.previous, reason)
    return trial


def _restore_previous(releases: Path, text: str | None = None) -> None:
    text = text if text is not None else (
        os.readlink(releases / "previous") if (releases / "previous").is_symlink() else None)
    if text is not None and (releases / text).is_dir():  # an absolute text ignores `releases`
        set_link(releases / "current", text)
    else:  # nothing to go back to but the built-in agent, which runs when `current` is absent
        (releases / "current").unlink(missing_ok=True)


def _record(releases: Path, trial: Trial, kind: str, reason: str | None, now: float) -> None:
    body: dict[str, Any] = {"type": kind, "cmd": trial.cmd_id, "version": trial.version,
                            "previous": trial.previous, "ts": round(now, 3)}
    if reason:
        body["reason"] = reason
    write_atomic(releases / OUTCOME, json.dumps(body).encode())


def take_outcome(releases: Path) -> dict[str, Any] | None:
    """The outcome not reported yet; the caller reports it, then calls `forget_outcome`."""
    return read_note(releases / OUTCOME)


def forget_outcome(releases: Path) -> None:
    (releases / OUTCOME).unlink(missing_ok=True)


# -- at start, in the built-in agent ----------------------------------------------------------

def check_at_start(releases: Path, *, now: float) -> str | None:
    """Roll back a trial whose deadline has passed: the new release crashed, hung or never
    reached the broker in time. Returns a line for the log when it acted."""
    trial = pending(releases)
    if trial is None or now < trial.deadline:
        return None
    rollback(releases, reason="not healthy in time (found at start)", now=now)
    return t("run.update_rolled_back", version=trial.version, cmd=trial.cmd_id,
             previous=trial.previous)


def enter_current(releases: Path, argv: list[str]) -> str | None:
    """Exec `<releases>/current/bin/batigate argv` unless this agent is that release; returns
    (with a line for the log when something is wrong) when this agent should go on itself."""
    current = releases / "current"
    try:
        if os.environ.get(EXEC_GUARD) or not current.is_symlink():
            return None
        target = current.resolve()
    except OSError as exc:
        return t("run.current_unreadable", current=current, error=exc)
    if target == Path(sys.prefix).resolve():
        return None
    program = target / "bin" / "batigate"
    if not os.access(program, os.X_OK):
        return t("run.program_missing", program=program)
    log.info("running the release in force: %s", target)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os.environ[EXEC_GUARD] = str(target)
    os.execv(program, [str(program), *argv])  # noqa: S606 - our own release, checked at install
    return None  # not reached
