"""`update.install` with `kind: rootfs`: the command side of a whole-system (RAUC) update, and
the running agent's side of its trial. The RAUC steps are in agent/lifecycle/update_rootfs.py;
agent/commands/ops/update.py checks the signed command and the release signature, then hands
the rootfs kind here (`install`), and its `watch` hands a rootfs trial here too.

    install ─► size, RAUC there? free space ─► download, sha256 ─► rauc install ─► note
            ─► reboot request ─► answers `in_progress`
    watch   ─► the new slot: birth acknowledged within update.health_within? mark-good
                                                                     : mark-bad + reboot
            ─► the old slot, new one primary: reboot again; otherwise: fell back (reported)
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable
from typing import Any

from agent.commands.models import Code, Outcome, Problem, Status
from agent.commands.registry import Call, Handler
from agent.lifecycle import update, update_rootfs, update_trial

log = logging.getLogger(__name__)

SPARE = 16 * 2**20  # left free on the data partition beyond the bundle itself
_busy: set[str] = set()


async def install(call: Call, args: Any) -> Outcome:
    """Called by update.install once the command and the release signature are checked."""
    settings = call.agent.config.update
    if args.size > settings.rootfs_max_mb * 2**20:
        raise Problem(Code.TOO_LARGE, f"{args.size} bytes; update.rootfs_max_mb is "
                      f"{settings.rootfs_max_mb}")
    releases = settings.releases
    if update_trial.pending(releases) is not None or update_rootfs.pending(releases) is not None:
        raise Problem(Code.CONFLICT, "another update is on trial")
    if _busy:
        raise Problem(Code.CONFLICT, "another update is being installed")
    try:
        before = await update_rootfs.slots()
    except update.UpdateError as exc:  # no RAUC here (a Debian box, not the image)
        raise Problem(Code.NOT_IMPLEMENTED, f"kind rootfs needs RAUC on the gateway: {exc}"
                      ) from None
    _busy.add(call.cmd_id)
    staging = releases / "staging"
    try:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        if shutil.disk_usage(staging).free < args.size + SPARE:
            raise update.UpdateError(f"not enough free space in {releases} for {args.size} bytes")
        bundle = staging / "system.raucb"
        got = await update.fetch(args.url, bundle, size=args.size,
                                 within=settings.download_within)
        if got != args.sha256:
            raise update.UpdateError(f"sha256 mismatch: got {got}, the command says {args.sha256}")
        state = await update_rootfs.install(bundle, within=settings.rootfs_install_within,
                                            before=before)
    except update.UpdateError as exc:
        raise Problem(Code.FAILED, f"{exc}; nothing was changed") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        _busy.discard(call.cmd_id)
    assert state.booted is not None and state.primary is not None
    update_rootfs.begin(releases, update_rootfs.Trial(
        cmd_id=call.cmd_id, version=args.version, slot=state.primary, previous=state.booted,
        health_within=settings.health_within, by=call.by))
    result = {"version": args.version, "slot": state.primary, "previous": state.booted,
              "health_within": settings.health_within, "reboot": True}
    try:
        update_rootfs.request_reboot(settings.reboot_request,
                                     f"system {args.version} installed in slot {state.primary} "
                                     f"by command {call.cmd_id}")
    except update.UpdateError as exc:  # installed all the same: the trial starts at next boot
        log.error("%s", exc)
        result.update(reboot=False, reboot_error=str(exc))
    return Outcome(Status.IN_PROGRESS, Code.ACCEPTED, result)


async def watch(handler: Handler, trial: update_rootfs.Trial,
                flush: Callable[[Handler], dict[str, Any] | None]) -> None:
    """The rootfs trial at this start (see update.watch); `flush` turns the outcome file into
    the command's final answer."""
    agent = handler.agent
    settings = agent.config.update
    releases = settings.releases
    try:
        where = await update_rootfs.on_boot(releases, trial, now=handler.clock.time())
    except update.UpdateError as exc:  # RAUC not answering: the boot counter still decides
        log.error("system update %s: %s", trial.version, exc)
        return
    if where == update_rootfs.REBOOT_PENDING:
        try:
            update_rootfs.request_reboot(settings.reboot_request,
                                         f"system {trial.version} waits in slot {trial.slot}")
        except update.UpdateError as exc:  # the next reboot, whatever its cause, will do
            log.error("%s", exc)
        return
    if where == update_rootfs.FELL_BACK:
        if (final := flush(handler)) is not None:
            await handler.publish_when_connected(final)
        return
    log.warning("system %s on trial in slot %s: it must reach the broker within %.0fs",
                trial.version, trial.slot, trial.health_within)
    try:
        async with asyncio.timeout(trial.health_within):
            await agent.uplink.connected.wait()
        await update_rootfs.commit(releases, trial, now=handler.clock.time())
    except (TimeoutError, update.UpdateError) as exc:
        why = str(exc) if isinstance(exc, update.UpdateError) else \
            "not healthy in time (no broker connection with birth)"
        await update_rootfs.rollback(releases, trial, why=why, now=handler.clock.time(),
                                     reboot_request=settings.reboot_request)
        if agent.uplink.connected.is_set() and (final := flush(handler)) is not None:
            await agent.uplink.publish_direct("cmd/res", final, qos=1)
        return
    if (final := flush(handler)) is not None:
        await agent.uplink.publish_direct("cmd/res", final, qos=1)
