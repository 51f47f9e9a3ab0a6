"""`update.install`: an A/B update of the agent, triggered by a signed command with a signed
bundle (images/README.md, "Updates"). The kinds of update, their installers and their trials are
the KINDS table of agent/lifecycle/update_trial.py; the trial is watched by trial_watch.py.

    update.install ─► signed command? release key? signature over sha256? (no network before)
                   ─► download: size, sha256 ─► unpack wheels ─► venv + pip --no-index
                   ─► trial.json, previous, current ─► restart: answers `in_progress`
    next start     ─► built-in agent: trial past its deadline? roll back. exec `current`
                   ─► trial watch: birth acknowledged by the broker before the deadline?
                      yes: `update.succeeded`; no: roll back, restart, `update.rolled_back`

`kind: rootfs` (the whole system through RAUC) shares the checks up to the release signature,
then goes to agent/commands/ops/update_rootfs.py; its trial is watched by trial_watch.py too.

The final outcome becomes the cached answer of the command and goes on `cmd/res` and `evt`, as
config.apply's does. Listed in agent/commands/catalog.py.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from agent.commands import signing
from agent.commands.ops import update_rootfs as rootfs_ops
from agent.commands.models import Code, Outcome, Problem, Status, _Args, ok
from agent.commands.registry import Call, op
from agent.lifecycle import update, update_trial
from agent.lifecycle.update_trial import KINDS, Staging
from agent.runtime.restart import request_restart

log = logging.getLogger(__name__)

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
    kind: Literal[tuple(KINDS)] = Field(  # type: ignore[valid-type]
        "agent", description="; ".join(f"{k.name}: {k.summary}" for k in KINDS.values()))
    allow_downgrade: bool = Field(False, description="install a version older than the running "
                                  "one (refused otherwise)")


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
    kind = KINDS[args.kind]
    if kind.install is None:  # rootfs: RAUC then checks the bundle's own signature too
        with _one_install(call.cmd_id):
            return await rootfs_ops.install(call, args)
    if args.size > settings.max_mb * 2**20:
        raise Problem(Code.TOO_LARGE, f"{args.size} bytes; update.max_mb is {settings.max_mb}")
    running = update_trial.running_version()
    if args.version == running:  # the same version again: nothing to do (no reinstall)
        return ok({"version": args.version, "changed": False})
    if update.version_key(args.version) < update.version_key(running) and \
            not args.allow_downgrade:
        raise Problem(Code.UNPROCESSABLE, f"{args.version} is older than the running "
                      f"{running}: a downgrade needs allow_downgrade: true in the signed command")
    if update_trial.on_trial(settings):
        raise Problem(Code.CONFLICT, "another update is on trial")
    with _one_install(call.cmd_id):
        try:
            result = await kind.install(settings, Staging(
                cmd_id=call.cmd_id, by=call.by, url=args.url, sha256=args.sha256,
                size=args.size, version=args.version), call.handler.clock.time)
        except update.UpdateError as exc:
            raise Problem(Code.FAILED, f"{exc}; nothing was changed") from None
    request_restart(agent, f"agent {args.version} installed by command {call.cmd_id}")
    return Outcome(Status.IN_PROGRESS, Code.ACCEPTED, result)


@contextlib.contextmanager
def _one_install(cmd_id: str) -> Iterator[None]:
    """One install at a time, of either kind: both write to update.releases, and the first
    one's trial would not see the second until it is written."""
    if _busy:
        raise Problem(Code.CONFLICT, "another update is being installed")
    _busy.add(cmd_id)
    try:
        yield
    finally:
        _busy.discard(cmd_id)
