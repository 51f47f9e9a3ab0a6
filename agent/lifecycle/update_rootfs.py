"""Whole-system updates (`update.install` with `kind: rootfs`): RAUC writes a signed bundle to the
other root slot, the gateway reboots into it on trial, and the slot is committed or given up
(images/README.md, "Whole-system A/B update with RAUC").

    install   `rauc install BUNDLE` (RAUC checks the bundle's CMS signature against its own
              keyring, writes the inactive slot and makes it primary) ─► note ─► reboot request
    on_boot   after the reboot: which slot runs? the new one: on trial; the old one with the new
              still primary: the reboot has not happened yet; the old one otherwise: the boot
              chooser fell back by itself (the new slot never came up)
    commit    `rauc status mark-good booted` once the agent's birth reached the broker
    rollback  `rauc status mark-bad booted` and a reboot: the boot chooser starts the old slot

The agent runs unprivileged: it talks to RAUC's D-Bus service through the `rauc` command line
(a D-Bus policy lets user `batigate` call it), and reboots by writing `update.reboot_request`,
which a root path unit watches (images/rauc/). The note and the outcome live in
`update.releases`, on the data partition, so both slots read them. This module knows nothing of
commands: agent/commands/ops/update_rootfs.py installs, trial_watch.py runs `watch`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.lifecycle.update import OUTCOME, UpdateError
from agent.sdk.durable import write_atomic

if TYPE_CHECKING:
    from agent.runtime.context import AgentContext

log = logging.getLogger(__name__)

TRIAL = "rootfs-trial.json"
RAUC = "rauc"  # on PATH: Debian's /usr/bin/rauc, a client of rauc-service over D-Bus
STATUS_WITHIN = 60.0  # `rauc status` and marking a slot: quick unless RAUC is stuck
MAX_OUTPUT = 64 * 1024  # what is kept of RAUC's output (its tail: the reason is at the end)


@dataclass(frozen=True, slots=True)
class Trial:
    cmd_id: str
    version: str
    slot: str  # boot name of the slot written (RAUC's bootname: A or B)
    previous: str  # boot name of the slot that ran the install
    health_within: float  # seconds from the agent's start in the new slot
    by: str | None = None


@dataclass(frozen=True, slots=True)
class Slots:
    booted: str | None  # boot name of the running slot
    primary: str | None  # boot name of the slot the boot chooser tries first


async def rauc(*args: str, within: float) -> tuple[int, str]:
    """Run `rauc ARGS`, bounded in time; returns its exit code and (the tail of) its output."""
    try:
        proc = await asyncio.create_subprocess_exec(
            RAUC, *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
    except OSError as exc:
        raise UpdateError(f"cannot run rauc: {exc}") from None
    assert proc.stdout is not None
    kept = bytearray()
    try:
        async with asyncio.timeout(within):
            while chunk := await proc.stdout.read(65536):
                kept += chunk
                del kept[:-MAX_OUTPUT]
            code = await proc.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise UpdateError(f"rauc {args[0]} did not end within {within:.0f}s") from None
    return code, kept.decode("utf-8", "replace")


def reason(output: str) -> str:
    """RAUC's own words for a failure: its `LastError:` line (e.g. "signature verification
    failed: ..."), else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("LastError:"):
            return line.removeprefix("LastError:").strip()
    return lines[-1] if lines else "no output"


async def slots() -> Slots:
    code, out = await rauc("status", "--output-format=json", within=STATUS_WITHIN)
    if code != 0:
        raise UpdateError(f"rauc status failed: {reason(out)}")
    try:
        doc = json.loads(out[out.index("{"):])
        names = {name: info.get("bootname") for entry in doc["slots"]
                 for name, info in entry.items()}
        return Slots(booted=doc.get("booted"), primary=names.get(doc.get("boot_primary")))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UpdateError(f"rauc status gave what this agent cannot read: {exc}") from None


async def install(bundle: Path, *, within: float, before: Slots) -> Slots:
    """`rauc install`: the written slot becomes primary. Nothing is switched for the running
    system until a reboot, so any failure here leaves the gateway as it was. `before`: `slots()`
    asked before the download (a gateway without RAUC is refused without downloading)."""
    code, out = await rauc("install", str(bundle), within=within)
    if code != 0:
        raise UpdateError(f"rauc refused the bundle: {reason(out)}")
    after = await slots()
    if after.primary is None or after.primary == before.booted:
        raise UpdateError(f"rauc installed, but the slot to boot is {after.primary}, not the "
                          f"other one than {before.booted}")
    return Slots(booted=before.booted, primary=after.primary)


# -- the note, the outcome and the reboot ------------------------------------------------------

def begin(releases: Path, trial: Trial) -> None:
    write_atomic(releases / TRIAL, json.dumps(asdict(trial)).encode())


def pending(releases: Path) -> Trial | None:
    try:
        return Trial(**json.loads((releases / TRIAL).read_bytes()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        # The boot chooser still protects the gateway: an unconfirmed slot runs out of attempts.
        log.error("unreadable %s (%s): ignored", releases / TRIAL, exc)
        return None


def request_reboot(path: Path, why: str) -> None:
    """Ask the root path unit to reboot (the agent may not); /run is gone after the reboot."""
    try:
        write_atomic(path, (why + "\n").encode())
    except OSError as exc:
        raise UpdateError(f"cannot ask for a reboot through {path}: {exc}") from None
    log.warning("reboot requested (%s): %s", path, why)


def _end(releases: Path, trial: Trial, kind: str, why: str | None, now: float) -> None:
    """The outcome in the shape of an agent update's (update.OUTCOME), then no note."""
    body: dict[str, Any] = {"type": kind, "cmd": trial.cmd_id, "version": trial.version,
                            "previous": f"slot {trial.previous}", "ts": round(now, 3)}
    if why:
        body["reason"] = why
    write_atomic(releases / OUTCOME, json.dumps(body).encode())
    (releases / TRIAL).unlink(missing_ok=True)


# -- after the reboot ------------------------------------------------------------------------

REBOOT_PENDING = "reboot-pending"
ON_TRIAL = "on-trial"
FELL_BACK = "fell-back"


async def on_boot(releases: Path, trial: Trial, *, now: float) -> str:
    """Where the trial stands at this start: ON_TRIAL (this slot must prove itself),
    REBOOT_PENDING (still the old slot, the new one primary) or FELL_BACK (recorded here)."""
    state = await slots()
    if state.booted is None:  # no rauc.slot= on the command line: never ask for reboot after reboot
        raise UpdateError("RAUC does not know which slot booted")
    if state.booted == trial.slot:
        return ON_TRIAL
    if state.primary == trial.slot:
        return REBOOT_PENDING
    _end(releases, trial, "update.rolled_back",
         f"the gateway came back on slot {state.booted}: slot {trial.slot} did not come up "
         "(the boot chooser fell back)", now)
    return FELL_BACK


async def commit(releases: Path, trial: Trial, *, now: float) -> None:
    code, out = await rauc("status", "mark-good", "booted", within=STATUS_WITHIN)
    if code != 0:
        raise UpdateError(f"rauc could not mark slot {trial.slot} good: {reason(out)}")
    _end(releases, trial, "update.succeeded", None, now)
    log.warning("system %s on slot %s committed", trial.version, trial.slot)


async def rollback(releases: Path, trial: Trial, *, why: str, now: float,
                   reboot_request: Path) -> None:
    """Give the running (new) slot up: RAUC marks it bad, so the boot chooser will not start
    it again, and the gateway reboots into the previous slot, whose agent reports."""
    code, out = await rauc("status", "mark-bad", "booted", within=STATUS_WITHIN)
    if code != 0:  # the boot counter still ends it, after its remaining attempts
        log.error("rauc could not mark slot %s bad: %s", trial.slot, reason(out))
    _end(releases, trial, "update.rolled_back", why, now)
    try:
        request_reboot(reboot_request, f"system {trial.version} rolled back: {why}")
    except UpdateError as exc:  # slot B stays up until a reboot, but is never chosen again
        log.error("%s", exc)


# -- the running agent's side ------------------------------------------------------------------

async def watch(agent: AgentContext, report: Callable[[], Awaitable[None]]) -> None:
    """The rootfs trial at this start (trial_watch.py runs it when a note is there): the new slot
    proves itself by its birth within update.health_within (mark-good) or is given up (mark-bad,
    reboot); on the old slot, a reboot still to come is asked again, a fall back is reported.
    `report` settles the outcome note: `evt`, final answer, `cmd/res`."""
    settings = agent.config.update
    releases = settings.releases
    trial = pending(releases)
    if trial is None:
        return
    try:
        where = await on_boot(releases, trial, now=agent.clock.time())
    except UpdateError as exc:  # RAUC not answering: the boot counter still decides
        log.error("system update %s: %s", trial.version, exc)
        return
    if where == REBOOT_PENDING:
        try:
            request_reboot(settings.reboot_request,
                           f"system {trial.version} waits in slot {trial.slot}")
        except UpdateError as exc:  # the next reboot, whatever its cause, will do
            log.error("%s", exc)
        return
    if where == FELL_BACK:
        await report()
        return
    log.warning("system %s on trial in slot %s: it must reach the broker within %.0fs",
                trial.version, trial.slot, trial.health_within)
    try:
        async with asyncio.timeout(trial.health_within):
            await agent.uplink.connected.wait()
        await commit(releases, trial, now=agent.clock.time())
    except (TimeoutError, UpdateError) as exc:
        why = str(exc) if isinstance(exc, UpdateError) else \
            "not healthy in time (no broker connection with birth)"
        await rollback(releases, trial, why=why, now=agent.clock.time(),
                       reboot_request=settings.reboot_request)
        if agent.uplink.connected.is_set():  # else the previous slot's agent reports it
            await report()
        return
    await report()
