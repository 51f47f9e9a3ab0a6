"""The fleet as the broker knows it: one row per gateway, from its retained `state`, `birth` and
`alarms` and its latest `health` (QoS 0, not retained: it comes every `health.interval`).

A row is built from whatever arrived; a gateway that never sent health since the view started
shows no outbox or certificate figures rather than stale ones. `events` follows `evt` for the
alarm stream of `remote alarms --follow`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from agent.remote.link import Link, Received, drain_retained

KINDS = ("state", "birth", "alarms", "health")


@dataclass
class Gateway:
    site: str
    gateway: str
    state: dict[str, Any] = field(default_factory=dict)
    birth: dict[str, Any] = field(default_factory=dict)
    alarms: list[dict[str, Any]] = field(default_factory=list)
    health: dict[str, Any] = field(default_factory=dict)
    health_at: float | None = None  # when this view received it

    def row(self, now: float) -> dict[str, Any]:
        health = self.health
        return {
            "site": self.site, "gateway": self.gateway,
            "online": self.state.get("online"), "sess": self.state.get("sess"),
            "since": self.state.get("ts"),
            "version": self.birth.get("agent"), "config": self.birth.get("config"),
            "devices": len(self.birth.get("devices") or []),
            "alarms": len(self.alarms),
            "outbox_depth": health.get("outbox_depth"),
            "outbox_oldest_age": health.get("outbox_oldest_age"),
            "cert_days": health.get("cert_days"),
            "clock_synced": health.get("clock_synced"),
            "health_age": None if self.health_at is None else round(now - self.health_at, 1),
        }


class Fleet:
    """Gateways by (site, id), fed by `feed` with the messages of the four topics."""

    def __init__(self) -> None:
        self.gateways: dict[tuple[str, str], Gateway] = {}
        self.changed = asyncio.Event()

    def feed(self, seen: Received) -> None:
        parts = seen.topic.split("/")
        if len(parts) < 4 or parts[-1] not in KINDS or not isinstance(seen.body, dict):
            return
        site, gw, kind = parts[-3], parts[-2], parts[-1]
        entry = self.gateways.setdefault((site, gw), Gateway(site, gw))
        body = seen.body
        if kind == "alarms":
            active = body.get("active")
            entry.alarms = [a for a in active if isinstance(a, dict)] if isinstance(
                active, list) else []
        elif kind == "health":
            entry.health, entry.health_at = body, time.time()
        else:
            setattr(entry, kind, body)
        self.changed.set()

    def rows(self) -> list[dict[str, Any]]:
        now = time.time()
        return [g.row(now) for _, g in sorted(self.gateways.items())]

    def active_alarms(self) -> list[dict[str, Any]]:
        return [{"site": g.site, "gateway": g.gateway, **a}
                for _, g in sorted(self.gateways.items()) for a in g.alarms]


async def watch(link: Link, site: str | None) -> tuple[Fleet, asyncio.Queue[Received]]:
    """Subscribe to the fleet topics of one site (or all) and take in the retained messages.
    Returns the fleet and the queue that keeps receiving (for --watch)."""
    fleet = Fleet()
    # One filter for the four kinds (and evt, which `feed` skips): `+` is a single level, so
    # the busy dev/… telemetry topics are not received.
    queue = await link.listen(f"{link.options.namespace}/{site or '+'}/+/+")
    await drain_retained(queue, on=fleet.feed)
    return fleet, queue


async def until_health(fleet: Fleet, queue: asyncio.Queue[Received], seconds: float) -> None:
    """Keep feeding for up to `seconds`, ending early once every online gateway sent health."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while (left := end - loop.time()) > 0:
        if all(g.health_at is not None for g in fleet.gateways.values()
               if g.state.get("online")):
            return
        try:
            fleet.feed(await asyncio.wait_for(queue.get(), left))
        except TimeoutError:
            return
