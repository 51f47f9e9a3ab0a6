"""Agent updates, the trial: the update policy of the trial machine (`trial.py`). A new release
runs on probation until it proves healthy, otherwise the previous one comes back by itself
(images/README.md, "Updates").

    <releases>/trial.json    the release on trial: command, version, links, deadline
    <releases>/outcome.json  how the last update ended, until a running agent has reported it

Two places act on a trial:

- `check_at_start` and `enter_current`, called by `batigate run` before anything else. systemd
  always starts the built-in agent (the venv of the image), so this code runs even when the new
  release cannot so much as import: once the deadline has passed, `current` goes back to
  `previous`. Then the built-in agent execs the release in force; the PID stays, so systemd's
  notify socket and watchdog follow without any change to the unit.
- the trial watcher (`trial_watch.py`), in the running agent: it commits the trial once the
  broker took its birth, rolls back at the deadline, and reports the outcome on `cmd/res` and
  `evt`.

`KINDS` is the table of update kinds `update.install` knows: a new kind (a whole rootfs slot, say)
is one entry, with its installer and its own trial policy; the command, the watcher and the start
check take it from there. The trial note is written before the switch, so a power cut at any step
ends in a rollback at most.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.i18n import t
from agent.lifecycle import update, update_rootfs
from agent.lifecycle.trial import Trial, Words
from agent.runtime.restart import request_restart

if TYPE_CHECKING:
    from agent.runtime.context import AgentContext

log = logging.getLogger(__name__)

TRIAL = "trial.json"
OUTCOME = update.OUTCOME
EXEC_GUARD = "BATIGATE_RELEASE"  # set before the exec: the release started so never execs again
SPARE = 64 * 2**20  # left free on the data partition beyond the update's own needs


@dataclass(frozen=True, slots=True)
class Release:
    cmd_id: str
    version: str
    release: str  # link text of the release on trial (what `current` says)
    previous: str  # link text a rollback puts back in `current`
    deadline: float  # epoch seconds
    by: str | None = None


def running_version() -> str:
    """The installed distribution's version: what pip was asked for, not a constant in code."""
    try:
        return metadata.version("batigate")
    except metadata.PackageNotFoundError:
        from agent import __version__  # noqa: PLC0415 - a source tree without metadata

        return __version__


class AgentRelease(Trial[Release, "AgentContext"]):
    kind = "update.agent"
    record_type = Release
    words = Words("update.install", "update.succeeded", "update.rolled_back",
                  start_reason="not healthy in time (found at start)",
                  deadline_reason="not healthy in time (no broker connection with birth)")
    commit_on_connect = True  # the broker acknowledged this release's birth

    def __init__(self, releases: Path) -> None:
        super().__init__(releases / TRIAL, releases / OUTCOME)
        self.releases = releases

    def unreadable(self, exc: Exception) -> Release | None:
        if isinstance(exc, OSError):  # e.g. a technician's `batigate run` that may not read it
            return super().unreadable(exc)
        # Unreadable: keep nothing half-understood, but never leave an unproven release in force.
        log.error("unreadable %s (%s): going back to the previous release", self.record_path, exc)
        self.restore(None)
        self.record_path.unlink(missing_ok=True)
        return None

    def restore(self, record: Release | None) -> None:
        """`current` back to what it was before the trial (or to `previous` when unknown)."""
        releases = self.releases
        text = record.previous if record is not None else (
            os.readlink(releases / "previous") if (releases / "previous").is_symlink() else None)
        if text is not None and (releases / text).is_dir():  # an absolute text ignores releases
            update.set_link(releases / "current", text)
        else:  # nothing to go back to but the built-in agent, which runs when `current` is absent
            (releases / "current").unlink(missing_ok=True)

    def fields(self, record: Release) -> dict[str, Any]:
        return {"version": record.version, "previous": record.previous}

    def result(self, outcome: dict[str, Any], committed: bool) -> dict[str, Any]:
        return {"version": outcome["version"], "previous": outcome["previous"]}

    def start_line(self, record: Release) -> str:
        return t("run.update_rolled_back", version=record.version, cmd=record.cmd_id,
                 previous=record.previous)

    def describe(self, record: Release) -> str:
        return f"agent update {record.version}"

    def stale(self, agent: AgentContext, record: Release) -> str | None:
        # The switch never took effect (power cut mid-install, exec refused): this agent is not
        # on trial, so it stays; only the links and the report are put right.
        running = running_version()
        return None if record.version == running else \
            f"the agent started is {running}, not {record.version}"

    async def resume(self, agent: AgentContext, why: str) -> bool:
        request_restart(agent, why)  # the built-in agent execs the restored release
        return True


# -- installing ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Staging:
    """What `update.install` hands an installer, once the command and the signature passed."""

    cmd_id: str
    by: str | None
    url: str
    sha256: str
    size: int
    version: str


async def install_agent(settings: Any, req: Staging, clock: Callable[[], float]
                        ) -> dict[str, Any]:
    """Download, check, unpack and install the release beside the running one, begin its trial,
    switch `current`; the caller restarts. UpdateError when nothing was switched."""
    releases = settings.releases
    releases.mkdir(parents=True, exist_ok=True)
    update.prune(releases)
    target = releases / req.version
    if target.resolve() in {(releases / n).resolve() for n in ("current", "previous")}:
        raise update.UpdateError(f"{req.version} is the current or previous release")
    staging = releases / "staging"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "wheels").mkdir(parents=True)
    try:
        unpacked = update.unpack_limit(req.size)
        # The bundle, its wheels (bounded by unpack_limit), the venv they become, and a spare.
        needed = req.size + unpacked + 2 * req.size + SPARE
        if shutil.disk_usage(releases).free < needed:
            raise update.UpdateError(f"not enough free space in {releases} for "
                                     f"{req.size} bytes ({needed} bytes are needed)")
        bundle = staging / "bundle.tar.gz"
        got = await update.fetch(req.url, bundle, size=req.size, within=settings.download_within)
        if got != req.sha256:
            raise update.UpdateError(f"sha256 mismatch: got {got}, the command says {req.sha256}")
        wheels = await update.unpack(bundle, staging / "wheels", max_bytes=unpacked)
        await update.install(staging / "wheels", target, req.version)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    previous = update.in_force(releases, Path(sys.prefix))
    record = Release(cmd_id=req.cmd_id, version=req.version, release=req.version,
                     previous=previous, deadline=clock() + settings.health_within, by=req.by)
    # The trial note first: from here on, any crash or power cut ends in a rollback at most.
    AgentRelease(releases).begin(record)
    update.set_link(releases / "previous", previous)
    update.set_link(releases / "current", update.link_text(releases, target))
    log.warning("agent %s installed in %s (previous: %s); healthy before %.0f or rolled back",
                req.version, target, previous, record.deadline)
    return {"version": req.version, "previous": previous, "wheels": len(wheels),
            "healthy_before": round(record.deadline, 3), "restart": True}


@dataclass(frozen=True, slots=True)
class UpdateKind:
    """One kind of update: how it installs, and its trial. `install` None: the kind has its own
    command path and trial (rootfs: agent/commands/ops/update_rootfs.py, update_rootfs.py)."""

    name: str
    summary: str  # for the command's description and its refusal
    install: Callable[[Any, Staging, Callable[[], float]], Awaitable[dict[str, Any]]] | None
    trial: Callable[[Any], Trial[Any, Any]] | None  # from the config's `update:` section


KINDS: dict[str, UpdateKind] = {k.name: k for k in (
    UpdateKind("agent", "a new venv, A/B by symlink", install_agent,
               lambda settings: AgentRelease(settings.releases)),
    UpdateKind("rootfs", "the whole system, a signed RAUC bundle written to the other root slot, "
               "then a reboot", None, None),
)}


def trials(settings: Any) -> list[Trial[Any, Any]]:
    """The trial of each kind that has one, for the watcher and the start check."""
    return [kind.trial(settings) for kind in KINDS.values() if kind.trial is not None]


def on_trial(settings: Any) -> bool:
    """Any update on trial, of any kind (one at a time)."""
    return any(trial.pending() is not None for trial in trials(settings)) or \
        update_rootfs.pending(settings.releases) is not None


def check_at_start(settings: Any, *, now: float) -> list[str]:
    """Roll back every update whose deadline has passed: the new release crashed, hung or never
    reached the broker in time. The lines for the log."""
    return [line for trial in trials(settings) if (line := trial.check_at_start(now=now))]


# -- at start, in the built-in agent ----------------------------------------------------------

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
