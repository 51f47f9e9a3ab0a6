"""`CommandHandler`: from the bytes of one `cmd/req` message to the answer for `cmd/res`.

    bytes ─► size ─► decode (JSON | CBOR) ─► shape ─► record (replay?) ─► envelope ─► op known?
          ─► signature + audience (or: may it run unsigned?) ─► expiry ─► marked running
          ─► arguments ─► run ─► answer recorded + audit ─► answer

Each step that fails answers `rejected` with a code and a reason, with the id whenever one could
be read (`"id": null` otherwise). Nothing a sender puts in a message can raise out of `__call__`:
the one broad `except` below is the isolation boundary that turns a bug in an operation into
`failed 500` and a log line with the traceback.

Only commands that passed authentication and expiry are recorded (store.py). A record of an
anonymous harmless command never blocks a different request with the same id: otherwise anyone
could squat an id and make the real command look like a replay. Without `commands.public_key`,
only the HARMLESS operations run unless `commands.unsigned: allow` (DESIGN §3.3).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import re
from pathlib import Path
from typing import Any

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from agent.runtime import logbuffer

from agent.commands import signing
from agent.commands.audit import AuditTrail
from agent.sdk.clock import Clock
from agent.commands import store
from agent.commands.models import (Code, CommandsConfig, Outcome, Problem, Request, Status,
                                   answer, describe)
from agent.commands.catalog import OPERATIONS
from agent.commands.registry import HARMLESS, Call
from agent.runtime.context import AgentContext

log = logging.getLogger(__name__)

MAX_WIRE_BYTES = 1_048_576  # beyond this nothing is parsed, not even the id
MAX_DEPTH = 12  # request > args > config object > devices > points > ... has room to spare
MAX_NODES = 50_000
_ID = re.compile(r"[\x21-\x7e]{1,128}")  # the same rule as models.CmdId


class CommandHandler:
    def __init__(self, agent: AgentContext, *, public_key: Ed25519PublicKey | bytes | Path | None = None,
                 clock: Clock | None = None, settings: CommandsConfig | None = None) -> None:
        self.agent = agent
        self.settings = settings or getattr(agent.config, "commands", None) or CommandsConfig()
        self.clock = clock or agent.clock
        self.public_key = _key(public_key if public_key is not None
                               else self.settings.public_key)
        # The answers live in the outbox's file; on a disk full at start only the outbox's own
        # connection can open it (Outbox.shared_connection), so the cache uses that one.
        db = agent.outbox.shared_connection() or store.connect(Path(agent.config.buffer.path))
        self.cache = store.AnswerCache(db, max_entries=self.settings.cache_size,
                                       retention=max(86400.0, self.settings.max_ttl),
                                       skew=self.settings.skew)
        self.audit = AuditTrail(db, keep_days=self.settings.audit_days)
        logbuffer.install()  # log.get reads it; installing twice is a no-op
        if self.public_key is None:
            self.auth = self.settings.auth
        else:
            self.auth = "signed" if self.settings.require_signature == "all" else "signed-writes"
        say_mode(self.auth)
        self._interrupted = self._fail_interrupted()

    def _fail_interrupted(self) -> list[dict[str, Any]]:
        """Commands the previous agent started and did not survive: failed, never run again."""
        answers = []
        now = self.clock.time()
        for cmd_id, op in self.cache.interrupted():
            log.error("command %s (%s) was being carried out when the agent stopped: answered "
                      "failed, not run again", cmd_id, op)
            body = answer(cmd_id, Problem(Code.FAILED, "the agent stopped while carrying it out "
                                          "(crash, kill or power cut); it is not run again"),
                          op=op, ts=now)
            self.cache.finish(cmd_id, body)
            self.audit.record(ts=now, cmd_id=cmd_id, op=op or "?", by=None, signed=False,
                              args={}, answer=body, kept=True)
            answers.append(body)
        return answers

    @staticmethod
    def operations() -> list[str]:
        """For the `commands` list of the birth message."""
        return sorted(OPERATIONS)

    # -- one message ----------------------------------------------------------------------------

    async def __call__(self, payload: bytes) -> dict[str, Any] | None:
        now = self.clock.time()
        state: dict[str, Any] = {"id": None, "op": None}
        try:
            return await self._handle(payload, now, state)
        except Problem as problem:
            return answer(state["id"], problem, op=state["op"], ts=now)
        except Exception:  # the isolation boundary: an operation's bug is one failed command
            log.exception("command %s (%s) failed", state["id"], state["op"])
            return answer(state["id"], Problem(Code.FAILED, "internal error (see the gateway log)"),
                          op=state["op"], ts=now)

    async def _handle(self, payload: bytes, now: float, state: dict[str, Any]) -> dict[str, Any]:
        if len(payload) > MAX_WIRE_BYTES:
            raise Problem(Code.TOO_LARGE, f"{len(payload)} bytes; at most "
                          f"{self.settings.max_bytes} are accepted")
        doc = decode(payload)
        if not isinstance(doc, dict):
            raise Problem(Code.BAD_REQUEST, "the request must be an object (JSON) or a map (CBOR)")
        raw_id = doc.get("id")
        if isinstance(raw_id, str) and _ID.fullmatch(raw_id):
            state["id"] = raw_id
        if isinstance(doc.get("op"), str) and len(doc["op"]) <= 64:
            state["op"] = doc["op"]
        check_shape(doc)
        limit = (self.settings.max_config_bytes if state["op"] == "config.apply"
                 else self.settings.max_bytes)
        if len(payload) > limit:
            raise Problem(Code.TOO_LARGE, f"{len(payload)} bytes; at most {limit} are accepted")
        digest = _digest(doc)
        if state["id"] is not None:
            entry = self.cache.get(state["id"])
            if entry is not None and (entry.protected or entry.digest == digest
                                      or entry.answer is None):
                return self._replayed(state["id"], digest, entry)
        try:
            request = Request.model_validate(doc)
        except ValidationError as exc:
            raise Problem(Code.BAD_REQUEST, describe(exc, "")) from None
        operation = OPERATIONS.get(request.op)
        if operation is None:
            raise Problem(Code.NOT_FOUND, f"unknown op {request.op!r}; known: "
                          f"{', '.join(sorted(OPERATIONS))}")
        signed = False
        try:
            signed = self._authenticate(doc, request)
            self._check_expiry(request, now)
        except Problem as problem:
            body = answer(request.id, problem, op=request.op, ts=now)
            # A refusal is kept in the audit only when its signature was good (expired, say):
            # anyone can send a bad one, and that noise must not push out the record.
            self._audit(request, signed=signed, body=body, now=now, kept=signed)
            return body
        # Protected: what a replay could abuse. Kept until it expires, never pushed out by count.
        protected = signed or request.op not in HARMLESS
        try:
            self.cache.begin(request.id, digest, op=request.op, exp=float(request.exp), now=now,
                             protected=protected)
        except store.StoreFull:
            raise Problem(Code.UNAVAILABLE, f"{store.MAX_PROTECTED} unexpired commands are on "
                          "record: try again when some have expired") from None
        try:
            body = await self._run(request, operation, signed, now)
        except Exception:  # the isolation boundary, here so that the record gets the answer
            log.exception("command %s (%s) failed", request.id, request.op)
            body = answer(request.id, Problem(Code.FAILED, "internal error (see the gateway "
                                              "log)"), op=request.op, ts=now)
        self.cache.finish(request.id, body)
        self._audit(request, signed=signed, body=body, now=now, kept=protected)
        return body

    async def _run(self, request: Request, operation: Any, signed: bool,
                   now: float) -> dict[str, Any]:
        try:
            args = operation.args.model_validate(request.args)
        except ValidationError as exc:
            return answer(request.id, Problem(Code.BAD_REQUEST, describe(exc, "args")),
                          op=request.op, ts=now)
        call = Call(self, request.id, request.by, signed, now)
        outcome: Outcome | Problem
        try:
            outcome = await operation.run(call, args)
        except Problem as problem:
            outcome = problem
        return answer(request.id, outcome, op=request.op, ts=now)

    def _replayed(self, cmd_id: str, digest: str, entry: store.Entry) -> dict[str, Any]:
        if digest != entry.digest:
            raise Problem(Code.CONFLICT, f"id {cmd_id!r} was already used by another command")
        if entry.answer is None:
            raise Problem(Code.CONFLICT, "a command with this id is being carried out")
        log.info("command %s replayed: answered from the record", cmd_id)
        return {**entry.answer, "replayed": True}

    def _authenticate(self, doc: dict[str, Any], request: Request) -> bool:
        """True when the signature was checked and is good; False for an unsigned command this
        gateway runs unsigned; raises Problem(401) otherwise."""
        gateway = self.agent.config.gateway.id
        if request.aud is not None and request.aud != gateway:
            raise Problem(Code.UNAUTHORIZED, f"aud {request.aud!r} is not this gateway")
        harmless = request.op in HARMLESS
        if self.public_key is None:
            if harmless or self.settings.unsigned == "allow":
                return False
            raise Problem(Code.UNAUTHORIZED, f"{request.op} changes this gateway or reveals its "
                          "configuration, logs or audit: refused unsigned (command auth "
                          "unsigned-readonly: commands.public_key is not set; a lab may set "
                          "commands.unsigned: allow)")
        if self.settings.require_signature == "writes" and harmless and request.sig is None:
            return False
        try:
            signing.verify(doc, self.public_key)
        except signing.SignatureError as exc:
            raise Problem(Code.UNAUTHORIZED, str(exc)) from None
        if request.aud is None:
            raise Problem(Code.UNAUTHORIZED, "a signed command must name this gateway in aud")
        return True

    def _check_expiry(self, request: Request, now: float) -> None:
        exp = float(request.exp)
        if not math.isfinite(exp):
            raise Problem(Code.BAD_REQUEST, "exp must be a finite number of epoch seconds")
        if exp + self.settings.skew < now:
            raise Problem(Code.GONE, f"expired {now - exp:.0f}s ago")
        # A far exp would outlive the replay cache; trust the check only with a synchronized
        # clock, or an unsynchronized gateway (still in 1970) could not be managed at all.
        if exp - now > self.settings.max_ttl + self.settings.skew and \
                self.agent.pipeline.clock_synced():
            raise Problem(Code.BAD_REQUEST, f"exp is more than {self.settings.max_ttl:.0f}s ahead")

    def _audit(self, request: Request, *, signed: bool, body: dict[str, Any], now: float,
               kept: bool) -> None:
        self.audit.record(ts=now, cmd_id=request.id, op=request.op, by=request.by, signed=signed,
                          args=request.args, answer=body, kept=kept)

    # -- what outlives one message --------------------------------------------------------------

    async def run(self) -> None:
        """Supervisor task: the answers of the commands the previous agent did not survive go on
        `cmd/res` once connected. (Trials are the `trials` task: agent/lifecycle/trial_watch.py.)"""
        async with asyncio.TaskGroup() as tg:
            for body in self._interrupted:
                tg.create_task(self.publish_when_connected(body))

    async def publish_when_connected(self, final: dict[str, Any]) -> None:
        await self.agent.uplink.connected.wait()
        await self.agent.uplink.publish_direct("cmd/res", final, qos=1)

    def settle(self, outcome: dict[str, Any], *, op: str, succeeded: bool,
               result: dict[str, Any]) -> dict[str, Any]:
        """The end of a command that outlived its first answer (a trial: a config apply, an agent
        update, a certificate; agent/lifecycle/trial.py): `outcome` goes on `evt` (committed at
        once), and becomes the command's final answer, cached so that a replay gets it. Returns it
        for `cmd/res`."""
        self.agent.pipeline.event(outcome)
        final = answer(outcome["cmd"], Outcome(Status.SUCCEEDED, Code.OK, result) if succeeded
                       else Problem(Code.FAILED, f"rolled back: {outcome.get('reason', '?')}",
                                    result), op=op, ts=self.clock.time())
        self.cache.update(outcome["cmd"], final)
        return final


def say_mode(auth: str) -> None:
    """Every start says in which mode commands are taken (DESIGN §3.3)."""
    if auth == "unsigned-allow":
        log.warning("commands: auth unsigned-allow: ANY command runs unsigned "
                    "(commands.unsigned: allow): whoever can publish on cmd/req owns this "
                    "gateway; lab use only")
    elif auth == "unsigned-readonly":
        log.warning("commands: auth unsigned-readonly: no commands.public_key, so only %s run; "
                    "every other command is refused", ", ".join(sorted(HARMLESS)))
    else:
        log.info("commands: auth %s", auth)


# -- decoding -------------------------------------------------------------------------------------

def decode(payload: bytes) -> Any:
    """JSON when the bytes are UTF-8 (a CBOR map never is: its first byte is a UTF-8
    continuation byte), else CBOR; Problem(400) when it does not parse. Duplicate keys and
    NaN/Infinity are refused: what is signed must be exactly what runs."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        try:
            return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
        except RecursionError:
            raise Problem(Code.BAD_REQUEST, "too deeply nested") from None
        except ValueError as exc:
            raise Problem(Code.BAD_REQUEST, f"malformed JSON: {exc}") from None
    try:
        return cbor2.loads(payload)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError,
            MemoryError, LookupError) as exc:
        raise Problem(Code.BAD_REQUEST, f"malformed: neither JSON nor CBOR ({exc})") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def check_shape(doc: Any) -> None:
    """Only JSON's types (CBOR may carry tags, bytes, undefined, even cycles), at most MAX_DEPTH
    levels and MAX_NODES values: iterative, so a hostile payload cannot exhaust the stack."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    nodes = 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if depth > MAX_DEPTH:
            raise Problem(Code.BAD_REQUEST, f"too deeply nested (more than {MAX_DEPTH} levels)")
        if nodes > MAX_NODES:
            raise Problem(Code.TOO_LARGE, f"more than {MAX_NODES} values")
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise Problem(Code.BAD_REQUEST, "map keys must be text")
                _check_text(key)
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise Problem(Code.BAD_REQUEST, "numbers must be finite")
        elif isinstance(value, int) and not isinstance(value, bool):
            if abs(value) >= 2**63:
                raise Problem(Code.BAD_REQUEST, "integers must fit in 64 bits")
        elif isinstance(value, str):
            _check_text(value)
        elif value is not None and not isinstance(value, bool):
            raise Problem(Code.BAD_REQUEST, f"a {type(value).__name__} value has no JSON "
                          "equivalent (CBOR tags, byte strings and undefined are not accepted)")


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Problem(Code.BAD_REQUEST, "text with invalid Unicode (lone surrogates)") from None


def _digest(doc: dict[str, Any]) -> str:
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _key(value: Ed25519PublicKey | bytes | Path | None) -> Ed25519PublicKey | None:
    if value is None or isinstance(value, Ed25519PublicKey):
        return value
    if isinstance(value, bytes):
        return signing.public_key_from_bytes(value)
    return signing.load_public_key(value)
