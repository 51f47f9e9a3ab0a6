"""Signed commands from the operator's side: build the request, sign it in the canonical form the
gateways verify (agent/commands/signing.py), send it to `{root}/cmd/req`, and wait for its final answer.

An answer `in_progress` is not final: a config apply, an agent update or a certificate install
answers again later on `cmd/res` with the same id (after a restart, from the new session), so
the waiting goes on until `succeeded`, `failed` or `rejected` (or `accepted`, for an op that is
only queued, such as poll.now), or until the deadline. Many gateways are driven side by side,
at most `concurrency` at a time, so a whole site does not flood the broker.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.commands import signing
from agent.remote.link import Link, Received, drain_retained

FINAL = {"succeeded", "failed", "rejected", "accepted"}
DEFAULT_KEY = Path("~/.config/batigate/command.key")


@dataclass(frozen=True)
class Target:
    site: str
    gateway: str

    def __str__(self) -> str:
        return f"{self.site}/{self.gateway}"


@dataclass
class Result:
    target: Target
    id: str
    answers: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None  # no final answer: timeout, broker lost

    @property
    def final(self) -> dict[str, Any] | None:
        return self.answers[-1] if self.answers and self.answers[-1].get("status") in FINAL \
            else None

    @property
    def status(self) -> str:
        if self.answers:
            return str(self.answers[-1].get("status"))
        return "no answer"

    @property
    def ok(self) -> bool:
        final = self.final
        return final is not None and final.get("status") in ("succeeded", "accepted")

    def as_dict(self) -> dict[str, Any]:
        last = self.answers[-1] if self.answers else {}
        return {"gateway": str(self.target), "id": self.id, "status": self.status,
                "code": last.get("code"), "result": last.get("result"),
                "error": last.get("error") or self.error, "answers": len(self.answers)}


# -- keys ---------------------------------------------------------------------------------------

def generate_key(private: Path) -> Path:
    """An Ed25519 command key: private PEM 0600 (refused if it exists), public PEM beside it as
    `<private>.pub` for the gateways' `commands.public_key`. Returns the public path."""
    if private.exists():
        raise FileExistsError(f"{private} exists; refusing to overwrite a key")
    private.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    signing.write_new_key(private)
    return private.with_name(private.name + ".pub")


def load_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: a command key is Ed25519")
    if path.stat().st_mode & 0o077:
        raise ValueError(f"{path}: a private key must not be readable by others (chmod 600)")
    return key


def fingerprint(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()[:12]


# -- requests -----------------------------------------------------------------------------------

def request(op: str, args: dict[str, Any], target: Target, *, ttl: float, by: str,
            key: Ed25519PrivateKey | None) -> dict[str, Any]:
    """`exp` in whole seconds (float formatting is where JSON libraries differ), `aud` the
    gateway (a signed command must name it), signed when a key is given."""
    body: dict[str, Any] = {"id": f"op-{uuid.uuid4().hex}", "op": op,
                            "exp": int(time.time() + ttl), "aud": target.gateway, "by": by}
    if args:
        body["args"] = args
    return signing.sign(body, key) if key is not None else body


class Sender:
    """Sends commands over one link and routes the answers on `cmd/res` back by id."""

    def __init__(self, link: Link, *, key: Ed25519PrivateKey | None, by: str, ttl: float = 120,
                 first_timeout: float = 15, final_timeout: float = 900,
                 concurrency: int = 8) -> None:
        self.link = link
        self.key = key
        self.by = by
        self.ttl = ttl
        self.first_timeout = first_timeout
        self.final_timeout = final_timeout
        self.slots = asyncio.Semaphore(max(1, concurrency))
        self._waiting: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self._routers: dict[str, asyncio.Task[None]] = {}  # site -> its cmd/res router

    async def _ensure(self, site: str) -> None:
        if site not in self._routers:
            queue = await self.link.listen(f"{self.link.options.namespace}/{site}/+/cmd/res")
            self._routers[site] = asyncio.ensure_future(self._route(queue))

    async def _route(self, queue: asyncio.Queue[Received]) -> None:
        while True:
            body = (await queue.get()).body
            if isinstance(body, dict) and (waiting := self._waiting.get(str(body.get("id")))):
                waiting.put_nowait(body)

    async def run(self, target: Target, op: str, args: dict[str, Any],
                  *, until_final: bool = True) -> Result:
        """Send one command and collect its answers until a final one. With `until_final`
        false it returns on the first answer; an `in_progress` one can then be `follow`ed."""
        await self._ensure(target.site)
        async with self.slots:
            body = request(op, args, target, ttl=self.ttl, by=self.by, key=self.key)
            result = Result(target, body["id"])
            self._waiting[body["id"]] = asyncio.Queue()
            await self.link.publish(f"{self.link.root(target.site, target.gateway)}/cmd/req",
                                    body)
            await self._collect(result, self.first_timeout, until_final=until_final)
            return result

    async def follow(self, result: Result, timeout: float | None = None) -> Result:
        """Wait for the final answer of a command that answered `in_progress`."""
        if result.id in self._waiting:
            await self._collect(result, timeout or self.final_timeout, until_final=True)
        return result

    async def _collect(self, result: Result, timeout: float, *, until_final: bool) -> None:
        answers = self._waiting[result.id]
        try:
            while True:
                try:
                    answer = await asyncio.wait_for(answers.get(), timeout)
                except TimeoutError:
                    result.error = (f"no answer within {timeout:.0f}s" if not result.answers
                                    else f"still {result.status} after {timeout:.0f}s")
                    break
                result.answers.append(answer)
                if answer.get("status") in FINAL:
                    break
                if not until_final:
                    return  # kept registered for `follow`
                timeout = self.final_timeout  # in_progress: the outcome comes later
        except BaseException:
            del self._waiting[result.id]
            raise
        del self._waiting[result.id]

    async def run_many(self, targets: list[Target], op: str, args: dict[str, Any]
                       ) -> list[Result]:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(self.run(t, op, args)) for t in targets]
        return [t.result() for t in tasks]

    async def close(self) -> None:
        for router in self._routers.values():
            router.cancel()
        await asyncio.gather(*self._routers.values(), return_exceptions=True)


async def site_gateways(link: Link, site: str) -> list[Target]:
    """The gateways of a site, from their retained `state` (every gateway that ever connected
    has one, online or not)."""
    queue = await link.listen(f"{link.options.namespace}/{site}/+/state")
    found: set[str] = set()
    await drain_retained(queue, on=lambda m: found.add(m.topic.split("/")[-2]) if m.retained
                         else None)
    return [Target(site, g) for g in sorted(found)]


async def locate(link: Link, gateway: str) -> Target:
    """The site of a gateway named alone, from its retained `state`."""
    queue = await link.listen(f"{link.options.namespace}/+/{gateway}/state")
    sites: set[str] = set()
    await drain_retained(queue, on=lambda m: sites.add(m.topic.split("/")[-3]))
    if len(sites) != 1:
        raise LookupError(f"gateway {gateway!r} is in {len(sites)} sites by its retained state "
                          "(say SITE/GATEWAY)" if sites else
                          f"gateway {gateway!r}: no retained state on this broker")
    return Target(sites.pop(), gateway)


def summary(results: list[Result]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    return counts
