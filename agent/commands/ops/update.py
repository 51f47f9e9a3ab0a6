"""`update.install`: an A/B update of the agent, triggered by a signed command with a signed
bundle (images/README.md, "Updates"), and `watch`, the running agent's side of the trial.

    update.install ─► signed command? release key? signature over sha256? (no network before)
                   ─► download: size, sha256 ─► unpack wheels ─► venv + pip --no-index
                   ─► trial.json, previous, current ─► restart: answers `in_progress`
    next start     ─► built-in agent: trial past its deadline? roll back. exec `current`
                   ─► watch: birth acknowledged by the broker before the deadline?
                      yes: `update.succeeded`; no: roll back, restart, `update.rolled_back`

`kind: rootfs` (the whole system through RAUC) shares the checks up to the release signature,
then goes to agent/commands/ops/update_rootfs.py, as does its trial in `watch`.

The final outcome becomes the cached answer of the command and goes on `cmd/res` and `evt`, as
config.apply's does. Listed in agent/commands/catalog.py.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sys
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from agent.commands import signing

from agent.lifecycle import update, update_rootfs

from agent.lifecycle import update_trial
from agent.commands.ops import update_rootfs as rootfs_ops
from agent.commands.models import Code, Outcome, Problem, Status, _Args, ok
from agent.commands.registry import Call, Handler, op
from agent.commands.targets import request_restart

log = logging.getLogger(__name__)

SPARE = 64 * 2**20  # left free on the data partition beyond the update's own needs
_busy: set[str] = set()  # the command being installed: one at a time


class UpdateArgs(_Args):
    url: Annotated[str, StringConstraints(max_length=2048, pattern=r"^https?://")] = Field(
        description="http(s) URL of the release bundle: a tar.gz of wheels (batigate + deps), "
                    "or for kind rootfs a RAUC bundle")
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] = Field(
        description="hex sha256 of the bundle")
    size: int = Field(ge=1, description="bytes of the bundle")
    version: Annotated[str, StringConstraints(pattern=update.VERSION)] = Field(
        description="the batigate version in the bundle (pip install batigate==version); for "
                    "kind rootfs the system version, reported back")
    sig: Annotated[str, StringConstraints(max_length=200)] = Field(
        description="base64 Ed25519 signature of the sha256 hex text by the release key")
    kind: Literal["agent", "rootfs"] = Field(
        "agent", description="agent: a new venv, A/B by symlink; rootfs: the whole system, a "
                             "signed RAUC bundle written to the other root slot, then a reboot")
    allow_downgrade: bool = Field(False, description="install a version older than the running "
                                  "one (refused otherwise)")


def running_version() -> str:
    """The installed distribution's version: what pip was asked for, not a constant in code."""
    try:
        return metadata.version("batigate")
    except metadata.PackageNotFoundError:
        from agent import __version__  # noqa: PLC0415 - a source tree without metadata

        return __version__


@op("update.install", UpdateArgs, writes=True)
async def update_install(call: Call, args: UpdateArgs) -> Outcome:
    """Install the agent release of a signed bundle beside the running one, switch to it and
    restart; it is rolled back by itself unless it reaches the broker within
    update.health_within. Must be a signed command. Answers `in_progress`; the outcome follows on
    `cmd/res` and `evt`."""
    agent = call.agent
    settings = agent.config.update
    if not call.signed:
        raise Problem(Code.UNAUTHORIZED, "update.install must be a signed command (this gateway "
                      "needs commands.public_key)")
    if settings.public_key is None:
        raise Problem(Code.FORBIDDEN, "updates are off: update.public_key (the release key) is "
                      "not set")
    try:
        key = signing.load_public_key(settings.public_key)
        update.verify_release(args.sha256, args.sig, key)
    except (OSError, ValueError) as exc:
        raise Problem(Code.FAILED, f"cannot read the release key: {exc}") from None
    except update.UpdateError as exc:
        raise Problem(Code.UNPROCESSABLE, str(exc)) from None
    if args.kind == "rootfs":  # RAUC then checks the bundle's own signature too
        return await rootfs_ops.install(call, args)
    if args.size > settings.max_mb * 2**20:
        raise Problem(Code.TOO_LARGE, f"{args.size} bytes; update.max_mb is {settings.max_mb}")
    running = running_version()
    if args.version == running:  # the same version again: nothing to do (no reinstall)
        return ok({"version": args.version, "changed": False})
    if update.version_key(args.version) < update.version_key(running) and \
            not args.allow_downgrade:
        raise Problem(Code.UNPROCESSABLE, f"{args.version} is older than the running "
                      f"{running}: a downgrade needs allow_downgrade: true in the signed command")
    releases = settings.releases
    if update_trial.pending(releases) is not None or update_rootfs.pending(releases) is not None:
        raise Problem(Code.CONFLICT, "another update is on trial")
    if _busy:
        raise Problem(Code.CONFLICT, "another update is being installed")
    _busy.add(call.cmd_id)
    try:
        result = await _install(call, args, releases)
    except update.UpdateError as exc:
        raise Problem(Code.FAILED, f"{exc}; nothing was changed") from None
    finally:
        _busy.discard(call.cmd_id)
    request_restart(agent, f"agent {args.version} installed by command {call.cmd_id}")
    return Outcome(Status.IN_PROGRESS, Code.ACCEPTED, result)


async def _install(call: Call, args: UpdateArgs, releases: Path) -> dict[str, Any]:
    settings = call.agent.config.update
    releases.mkdir(parents=True, exist_ok=True)
    update.prune(releases)
    target = releases / args.version
    if target.resolve() in {(releases / n).resolve() for n in ("current", "previous")}:
        raise update.UpdateError(f"{args.version} is the current or previous release")
    staging = releases / "staging"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "wheels").mkdir(parents=True)
    try:
        unpacked = update.unpack_limit(args.size)
        # The bundle, its wheels (bounded by unpack_limit), the venv they become, and a spare.
        needed = args.size + unpacked + 2 * args.size + SPARE
        if shutil.disk_usage(releases).free < needed:
            raise update.UpdateError(f"not enough free space in {releases} for "
                                     f"{args.size} bytes ({needed} bytes are needed)")
        bundle = staging / "bundle.tar.gz"
        got = await update.fetch(args.url, bundle, size=args.size,
                                 within=settings.download_within)
        if got != args.sha256:
            raise update.UpdateError(f"sha256 mismatch: got {got}, the command says {args.sha256}")
        wheels = await update.unpack(bundle, staging / "wheels", max_bytes=unpacked)
        await update.install(staging / "wheels", target, args.version)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    previous = update.in_force(releases, Path(sys.prefix))
    trial = update_trial.Trial(cmd_id=call.cmd_id, version=args.version, release=args.version,
                               previous=previous,
                               deadline=call.handler.clock.time() + settings.health_within,
                               by=call.by)
    # The trial note first: from here on, any crash or power cut ends in a rollback at most.
    update_trial.begin(releases, trial)
    update.set_link(releases / "previous", previous)
    update.set_link(releases / "current", update.link_text(releases, target))
    log.warning("agent %s installed in %s (previous: %s); healthy before %.0f or rolled back",
                args.version, target, previous, trial.deadline)
    return {"version": args.version, "previous": previous, "wheels": len(wheels),
            "healthy_before": round(trial.deadline, 3), "restart": True}


# -- the running agent's side of the trial ------------------------------------------------------

async def watch(handler: Handler, *, running: str | None = None) -> None:
    """Supervisor task: report how the last update ended; confirm the release on trial once the
    broker acknowledged its birth (`uplink.connected`), or roll it back at the deadline."""
    agent = handler.agent
    releases = agent.config.update.releases
    running = running or running_version()
    async with asyncio.TaskGroup() as tg:
        if (final := _flush_outcome(handler)) is not None:
            tg.create_task(handler.publish_when_connected(final))
        if (system := update_rootfs.pending(releases)) is not None:
            await rootfs_ops.watch(handler, system, _flush_outcome)
            return
        trial = update_trial.pending(releases)
        if trial is None:
            return
        if trial.version != running:
            # The switch never took effect (power cut mid-install, exec refused): this agent is
            # not on trial, so it stays; only the links and the report are put right.
            update_trial.rollback(releases, now=handler.clock.time(),
                                  reason=f"the agent started is {running}, not {trial.version}")
            if (final := _flush_outcome(handler)) is not None:
                tg.create_task(handler.publish_when_connected(final))
            return
        delay = max(0.0, trial.deadline - handler.clock.time())
        log.warning("agent %s on trial: it must reach the broker within %.0fs", running, delay)
        try:
            async with asyncio.timeout(delay):
                await agent.uplink.connected.wait()
        except TimeoutError:
            await _end(handler, update_trial.rollback(
                releases, reason="not healthy in time (no broker connection with birth)",
                now=handler.clock.time()))
            return
        update_trial.confirm(releases, now=handler.clock.time())
        if (final := _flush_outcome(handler)) is not None:
            await agent.uplink.publish_direct("cmd/res", final, qos=1)


async def _end(handler: Handler, trial: update_trial.Trial | None) -> None:
    """After a rollback: report it now if the broker is there (otherwise the outcome file waits
    for the previous release, which reports it once connected), and restart on that release."""
    if trial is None:
        return
    if handler.agent.uplink.connected.is_set() and (final := _flush_outcome(handler)):
        await handler.agent.uplink.publish_direct("cmd/res", final, qos=1)
    request_restart(handler.agent, f"agent update {trial.version} rolled back")


def _flush_outcome(handler: Handler) -> dict[str, Any] | None:
    """The outcome file becomes a durable `evt` and the final cached answer of update.install."""
    releases = handler.agent.config.update.releases
    outcome = update_trial.take_outcome(releases)
    if outcome is None:
        return None
    final = handler.settle(outcome, op="update.install",
                           succeeded=outcome["type"] == "update.succeeded",
                           result={"version": outcome["version"],
                                   "previous": outcome["previous"]})
    update_trial.forget_outcome(releases)
    return final
