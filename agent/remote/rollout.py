"""`remote update BUNDLE --site S`: a staged agent update of a whole site.

    canary (one gateway) ─► update.install ─► final answer `succeeded` (the new release
    reached the broker in time, or it was rolled back: `failed`) ─► online, birth says the new version,
    ping answers ─► the rest, `concurrency` at a time ─► per-gateway results and a summary

A canary that fails stops the rollout: the other gateways are not touched ("skipped").
The bundle and its manifest come from `batigate release build`; the bundle is checked here
with the release public key first when one is given, so a wrong file never reaches a gateway.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from agent.remote.commands import Result, Sender, Target
from agent.remote.link import Link, Received, drain_retained


@dataclass
class Rollout:
    canary: Target | None
    results: list[Result] = field(default_factory=list)
    skipped: list[Target] = field(default_factory=list)
    canary_health: list[str] = field(default_factory=list)  # why the canary is not healthy

    @property
    def ok(self) -> bool:
        return not self.skipped and not self.canary_health and all(r.ok for r in self.results)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "canary": str(self.canary) if self.canary else None,
                "canary_health": self.canary_health,
                "results": [r.as_dict() for r in self.results],
                "skipped": [str(t) for t in self.skipped]}


async def came_back(link: Link, sender: Sender, target: Target, version: str,
                    wait: float) -> list[str]:
    """Problems with the gateway after its update (none: healthy): online, the birth of the new
    version (retained, so an old one is replaced as soon as the new agent connects), ping."""
    root = link.root(target.site, target.gateway)
    seen: dict[str, dict[str, Any]] = {}

    def take(message: Received) -> None:
        if isinstance(message.body, dict):
            seen[message.topic.rsplit("/", 1)[-1]] = message.body

    queue = await link.listen(f"{root}/+")
    await drain_retained(queue, on=take)
    loop = asyncio.get_running_loop()
    end = loop.time() + wait
    while not (seen.get("state", {}).get("online") and seen.get("birth", {}).get(
            "agent") == version) and (left := end - loop.time()) > 0:
        try:
            take(await asyncio.wait_for(queue.get(), left))
        except TimeoutError:
            break
    problems = []
    if not seen.get("state", {}).get("online"):
        problems.append("offline")
    if (running := seen.get("birth", {}).get("agent")) != version:
        problems.append(f"its birth says version {running}, not {version}")
    ping = await sender.run(target, "ping", {})
    if not ping.ok:
        problems.append(f"ping: {ping.status} {ping.error or ''}".strip())
    return problems


async def run(link: Link, sender: Sender, targets: list[Target], args: dict[str, Any], *,
              canary: Target | None = None, wait: float = 60) -> Rollout:
    if not targets:
        return Rollout(None)
    first = canary or targets[0]
    rest = [t for t in targets if t != first]
    report = Rollout(first)
    result = await sender.run(first, "update.install", args)
    report.results.append(result)
    if result.ok:
        report.canary_health = await came_back(link, sender, first, args["version"], wait)
    if not result.ok or report.canary_health:
        report.skipped = rest
        return report
    report.results.extend(await sender.run_many(rest, "update.install", args))
    return report
