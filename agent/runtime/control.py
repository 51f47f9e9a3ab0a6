"""The local control socket: how `batigate status`, `read` and `write` reach the running agent.

    CLI ──JSON line──► /run/batigate/control.sock ──► local op (status, device.read)
                                                  └─► command op (point.read, point.write, ...)

Why a socket and not the bus: only the agent may talk on a field bus while it runs (a second
master on RS-485 corrupts both), so a one-shot read goes through the agent's bus lock.

Who may connect: the file system decides. The socket is created with mode 0660 (the umask is
narrowed around bind, so it is never wider, even for a moment) and given to the group
`batigate` when it exists: root and that group only. The kernel's SO_PEERCRED names the caller,
which becomes the command's `by` (`local:uid=1000(tech)`) in the audit trail. A local caller is
trusted like a signed command: being root or in the group on the gateway is the credential.

Protocol: one JSON object per line, `{"op": ..., "args": {...}}`, one JSON answer per line (the
same answer document as `cmd/res`).

Bounds (a local user must not exhaust the agent): a line is at most MAX_LINE bytes, a client
silent for `control.idle_timeout` is disconnected, and at most `control.max_clients` are served
at once (never more than a quarter of the process's descriptor limit): one more is answered
503 and disconnected at once, so idle clients can never fill the descriptor table. Each refusal is
counted in `health.control`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import grp
import json
import logging
import os
import pwd
import socket
import stat
import struct
import uuid
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agent.runtime import status as status_mod
from agent.runtime.context import AgentContext
from agent.runtime.control_stats import ControlStats, client_cap

log = logging.getLogger(__name__)

GROUP = "batigate"
SOCKET_MODE = 0o660
MAX_LINE = 262_144  # a config.apply carries a whole file
STATUS_OP, DEVICE_READ_OP = "status", "device.read"
SNAPSHOT_OP = "snapshot"  # status + last values + bus counters: `batigate status --watch`


class NotRunning(Exception):
    """No agent answers on the socket."""


class ControlError(Exception):
    """The socket exists but cannot be used (permissions, garbage)."""


# -- server ---------------------------------------------------------------------------------------

async def serve(agent: AgentContext) -> None:
    """Supervisor task: the control socket, and the certificate expiry watch beside it."""
    from agent.lifecycle import cert_watch as watch  # noqa: PLC0415 - cryptography only when the agent runs

    path = Path(agent.config.control.socket)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(watch.expiry(agent), name="cert-watch")
        try:
            listener = await start(agent, path)
        except (OSError, ControlError) as exc:
            # The agent's real job (data to the broker) does not depend on the local socket.
            log.error("control socket %s not available: %s; `batigate status/read/write` "
                      "will not reach this agent", path, exc)
            return
        try:
            await _accept(agent, listener, tg)
        finally:
            listener.close()
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


async def start(agent: AgentContext, path: Path) -> socket.socket:
    """Bind the control socket (mode 0660 at most) and return the listening socket."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(os.lstat(path).st_mode):  # never remove a file we did not make
            raise ControlError(f"{path} exists and is not a socket")
        if await _answers(path):
            raise ControlError("another agent already listens there")
        path.unlink()  # left over by a killed agent
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o117)  # the socket file is born 0660 at most
    try:
        sock.bind(str(path))
    finally:
        os.umask(previous)
    os.chmod(path, SOCKET_MODE)
    with contextlib.suppress(KeyError):
        os.chown(path, -1, grp.getgrnam(GROUP).gr_gid)
    sock.listen(8)
    sock.setblocking(False)
    return sock


REFUSAL = b'{"status": "rejected", "code": 503, "error": "too many control clients"}\n'
_NO_DESCRIPTOR = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
NO_DESCRIPTOR_PAUSE = 1.0  # after EMFILE, accept again this much later (or when a client leaves)


async def _accept(agent: AgentContext, listener: socket.socket, tg: asyncio.TaskGroup) -> None:
    """Our own accept loop, one connection at a time, so that a client over the cap is closed
    before the next is accepted (asyncio's server accepts a batch first), and a full descriptor
    table pauses accepting instead of failing anything."""
    loop = asyncio.get_running_loop()
    stats: ControlStats = agent.control_stats
    cap = client_cap(agent.config.control.max_clients)
    left = asyncio.Event()  # a client went away: a descriptor may be free again
    while True:
        try:
            conn, _ = await loop.sock_accept(listener)
        except OSError as exc:
            if exc.errno not in _NO_DESCRIPTOR:
                raise
            stats.no_descriptor += 1
            if stats.no_descriptor in (1, 10, 100) or stats.no_descriptor % 1000 == 0:
                log.warning("control socket: no descriptor to accept a client (%s); %d times so "
                            "far", exc.strerror, stats.no_descriptor)
            left.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(NO_DESCRIPTOR_PAUSE):
                    await left.wait()
            continue
        if stats.clients >= cap:
            stats.refused += 1
            if stats.refused in (1, 10, 100) or stats.refused % 1000 == 0:
                log.warning("control socket: %d clients already; refused %d so far", cap,
                            stats.refused)
            with contextlib.suppress(OSError):
                conn.send(REFUSAL)  # non-blocking: the socket buffer takes it or nothing
            conn.close()
            continue
        stats.clients += 1
        tg.create_task(_client(agent, conn, stats, left), name="control-client")


async def _client(agent: AgentContext, conn: socket.socket, stats: ControlStats,
                  left: asyncio.Event) -> None:
    try:
        try:
            reader, writer = await asyncio.open_unix_connection(sock=conn, limit=MAX_LINE)
        except OSError:
            conn.close()
            return
        await _serve_client(agent, reader, writer)
    finally:
        stats.clients -= 1
        left.set()


async def _answers(path: Path) -> bool:
    try:
        _, writer = await asyncio.open_unix_connection(str(path))
    except OSError:
        return False
    writer.close()
    return True


def peer(writer: asyncio.StreamWriter) -> str:
    sock = writer.get_extra_info("socket")
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return "local:unknown"
    _, uid, _ = struct.unpack("3i", raw)
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"local:uid={uid}"
    return f"local:uid={uid}({name})"


async def _serve_client(agent: AgentContext, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
    by = peer(writer)
    stats: ControlStats = agent.control_stats
    idle = agent.config.control.idle_timeout
    try:
        while True:
            try:
                async with asyncio.timeout(idle):
                    line = await reader.readline()
            except TimeoutError:
                stats.idle_closed += 1
                log.info("control client %s silent for %gs: disconnected", by, idle)
                break
            if not line:
                break
            answer = await handle_line(agent, line, by)
            writer.write(json.dumps(answer, default=str).encode() + b"\n")
            async with asyncio.timeout(idle):  # a client that does not read its answers
                await writer.drain()
    except ValueError as exc:  # a line over MAX_LINE
        stats.oversized += 1
        log.info("control client %s dropped: %s", by, exc)
    except (ConnectionError, TimeoutError) as exc:
        log.info("control client %s dropped: %s", by, exc or "not reading its answers")
    finally:
        writer.close()


async def handle_line(agent: AgentContext, line: bytes, by: str) -> dict[str, Any]:
    from agent.commands.models import Code, Problem, answer  # noqa: PLC0415

    now = agent.clock.time()
    try:
        request = json.loads(line)
        if not isinstance(request, dict) or not isinstance(request.get("op"), str):
            raise ValueError("expected {\"op\": ..., \"args\": {...}}")
        args = request.get("args") or {}
        if not isinstance(args, dict):
            raise ValueError("args must be an object")
    except ValueError as exc:
        return answer(None, Problem(Code.BAD_REQUEST, f"bad request: {exc}"), op=None, ts=now)
    op = request["op"]
    try:
        if op == STATUS_OP:
            return answer(None, _ok(status_mod.status(agent)), op=op, ts=now)
        if op == DEVICE_READ_OP:
            return answer(None, _ok(await device_read(agent, args)), op=op, ts=now)
        if op == SNAPSHOT_OP:
            from agent.display.snapshot import snapshot  # noqa: PLC0415

            return answer(None, _ok(snapshot(agent)), op=op, ts=now)
        return await dispatch(agent, op, args, by)
    except Problem as problem:
        return answer(None, problem, op=op, ts=now)
    except Exception:  # the isolation boundary: a bug here must not stop the agent; it is logged
        log.exception("control op %s failed", op)
        return answer(None, Problem(Code.FAILED, "internal error (see the gateway log)"),
                      op=op, ts=now)


def _ok(result: Any) -> Any:
    from agent.commands.models import ok  # noqa: PLC0415

    return ok(result)


async def dispatch(agent: AgentContext, op: str, args: dict[str, Any], by: str) -> dict[str, Any]:
    """Run a command operation for a local caller: the handler's operations, argument models,
    answers and audit trail, without the signature (the socket's permissions stand for it)."""
    from agent.commands.models import Code, Problem, answer, describe  # noqa: PLC0415
    from agent.commands.catalog import OPERATIONS  # noqa: PLC0415
    from agent.commands.registry import Call  # noqa: PLC0415

    handler = agent.commands
    now = agent.clock.time()
    cmd_id = f"local-{uuid.uuid4().hex[:12]}"
    operation = OPERATIONS.get(op)
    if operation is None:
        known = ", ".join(sorted([*OPERATIONS, STATUS_OP, DEVICE_READ_OP, SNAPSHOT_OP]))
        return answer(cmd_id, Problem(Code.NOT_FOUND, f"unknown op {op!r}; known: {known}"),
                      op=op, ts=now)
    try:
        parsed = operation.args.model_validate(args)
    except ValidationError as exc:
        body = answer(cmd_id, Problem(Code.BAD_REQUEST, describe(exc, "args")), op=op, ts=now)
    else:
        try:
            outcome = await operation.run(Call(handler, cmd_id, by, False, now), parsed)
        except Problem as problem:
            outcome = problem
        body = answer(cmd_id, outcome, op=op, ts=now)
    handler.audit.record(ts=now, cmd_id=cmd_id, op=op, by=by, signed=False, args=args,
                         answer=body)
    return body


# -- local ops ------------------------------------------------------------------------------------

async def device_read(agent: AgentContext, args: dict[str, Any]) -> dict[str, Any]:
    """Every point of one device in one poll, under the bus lock (point.read polls once per
    point: N polls for a meter read in full)."""
    from agent.commands.models import Code, Problem  # noqa: PLC0415
    from agent.commands.targets import device_named, fresh_readings  # noqa: PLC0415

    dev = args.get("dev")
    if not isinstance(dev, str):
        raise Problem(Code.BAD_REQUEST, "args.dev: the device id")
    device = device_named(agent, dev)
    readings = await fresh_readings(agent, device)
    ts = readings[0].ts if readings else agent.clock.time()
    return {"dev": device.id, "ts": round(ts, 3),
            "points": [{"n": r.name, "v": r.value, "u": r.unit, "q": r.quality.value,
                        **({"reason": r.reason} if r.reason else {})} for r in readings]}


# -- client ---------------------------------------------------------------------------------------

async def request(path: Path, op: str, args: dict[str, Any] | None = None, *,
                  timeout: float = 30.0) -> dict[str, Any]:
    """One request to the running agent; NotRunning when nobody listens."""
    try:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=MAX_LINE)
    except (FileNotFoundError, ConnectionRefusedError):
        raise NotRunning(f"no agent answers on {path}") from None
    except PermissionError:
        raise ControlError(f"permission denied on {path}: run as root or as a member of the "
                           f"group {GROUP!r}") from None
    try:
        writer.write(json.dumps({"op": op, "args": args or {}}).encode() + b"\n")
        async with asyncio.timeout(timeout):
            await writer.drain()
            line = await reader.readline()
    except TimeoutError:
        raise ControlError(f"the agent did not answer {op} within {timeout:g}s") from None
    finally:
        writer.close()
    if not line:
        raise ControlError("the agent closed the connection without an answer")
    answer = json.loads(line)
    if not isinstance(answer, dict):
        raise ControlError("the agent sent something that is not an answer")
    return answer


async def running(path: Path) -> bool:
    return await _answers(path)
