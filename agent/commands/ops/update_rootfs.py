"""`update.install` with `kind: rootfs`: the command side of a whole-system (RAUC) update. The
RAUC steps and the trial after the reboot are in agent/lifecycle/update_rootfs.py (watched by
trial_watch.py); agent/commands/ops/update.py checks the signed command and the release
signature, then hands the rootfs kind here.

    install ─► size, RAUC there? free space ─► download, sha256 ─► rauc install ─► note
            ─► reboot request ─► answers `in_progress`
"""

from __future__ import annotations

import logging
import shutil
from typing import Any

from agent.commands.models import Code, Outcome, Problem, Status
from agent.commands.registry import Call
from agent.lifecycle import update, update_rootfs, update_trial

log = logging.getLogger(__name__)

SPARE = 16 * 2**20  # left free on the data partition beyond the bundle itself


async def install(call: Call, args: Any) -> Outcome:
    """Called by update.install once the command and the release signature are checked."""
    settings = call.agent.config.update
    if args.size > settings.rootfs_max_mb * 2**20:
        raise Problem(Code.TOO_LARGE, f"{args.size} bytes; update.rootfs_max_mb is "
                      f"{settings.rootfs_max_mb}")
    releases = settings.releases
    if update_trial.on_trial(settings):
        raise Problem(Code.CONFLICT, "another update is on trial")
    try:
        before = await update_rootfs.slots()
    except update.UpdateError as exc:  # no RAUC here (a Debian box, not the image)
        raise Problem(Code.NOT_IMPLEMENTED, f"kind rootfs needs RAUC on the gateway: {exc}"
                      ) from None
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

