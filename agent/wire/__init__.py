"""Wire profiles: the conventions other platforms already consume, fed from the one outbox.

    outbox row ─► uplink ─► native topic + envelope        (always: the reference)
                        └─► Wire.render(row) ─► [(topic, payload, retain)] per profile

A profile never has a queue of its own: what it publishes is derived from the outbox row being
delivered, in the same batch, and the row leaves the outbox only when the broker took the native
message and every profile message made from it. So each profile has the native durability,
order, backlog replay and overflow policy by construction. `announce` adds what a profile says
at each connection and each rebirth (Home Assistant's retained discovery configs); `subscriptions`
and `on_message` carry what a platform sends back (Home Assistant's set topics), which only ever
reaches the gateway through the command layer's guarded operations.

Profiles: `native` (no extra messages), `homeassistant` (agent/wire/homeassistant.py) and
`thingsboard` (agent/wire/thingsboard.py). `sparkplug` (agent/wire/sparkplug.py) is not one of
`Wire.profiles`: its NDEATH must be the Will of its own MQTT session, so the uplink hands each
row to agent/uplink/sparkplug.py, which renders and publishes it there (same all-or-nothing ack).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from agent.runtime.context import AgentContext
from agent.store.outbox import Message

log = logging.getLogger(__name__)

Publication = tuple[str, bytes, bool]  # topic, payload, retain


class Profile(Protocol):
    def render(self, message: Message, body: dict[str, Any], hist: bool
               ) -> list[Publication]: ...

    def announce(self) -> list[Publication]: ...

    def subscriptions(self) -> list[str]: ...

    async def on_message(self, topic: str, payload: bytes) -> list[Publication]: ...


class Wire:
    """The profiles of one gateway, built from `mqtt.profiles`. `agent` gives them the live
    config (a config apply changes devices) and the command layer for writes."""

    def __init__(self, agent: AgentContext) -> None:
        self.agent = agent
        self.profiles: list[Profile] = []
        self.dropped = 0  # messages from a platform that were refused (malformed, not allowed)
        self.failures = 0  # rows a profile could not render (a bug): logged, native still sent
        names = agent.config.mqtt.profiles
        if "homeassistant" in names:
            from agent.wire.homeassistant import HomeAssistant  # noqa: PLC0415

            self.profiles.append(HomeAssistant(agent, self))
        if "thingsboard" in names:
            from agent.wire.thingsboard import ThingsBoard  # noqa: PLC0415

            self.profiles.append(ThingsBoard(agent, self))

    def __bool__(self) -> bool:
        return bool(self.profiles)

    def render(self, message: Message, hist: bool) -> list[Publication]:
        body = message.fields()  # parsed once for every profile
        out: list[Publication] = []
        for profile in self.profiles:
            try:
                out.extend(profile.render(message, body, hist))
            except Exception:  # noqa: BLE001 - the isolation boundary: logged and counted
                # A profile bug must not hold the row (and the whole outbox behind it) forever:
                # the native message and the other profiles still go.
                self.failures += 1
                log.exception("wire profile %s failed on seq %d (%s); skipped for this "
                              "message", type(profile).__name__, message.seq, message.topic)
        return out

    def announce(self) -> list[Publication]:
        return [p for profile in self.profiles for p in profile.announce()]

    def subscriptions(self) -> list[str]:
        return [t for profile in self.profiles for t in profile.subscriptions()]

    async def on_message(self, topic: str, payload: bytes) -> list[Publication]:
        """What a platform sent on a subscribed topic; returns the replies to publish."""
        out: list[Publication] = []
        for profile in self.profiles:
            if any(topic_matches(f, topic) for f in profile.subscriptions()):
                try:
                    out.extend(await profile.on_message(topic, payload))
                except Exception:  # noqa: BLE001 - isolation boundary: a platform's message
                    # must not end the MQTT connection (the uplink's task group) on a bug
                    self.failures += 1
                    log.exception("wire profile %s failed on a message on %s",
                                  type(profile).__name__, topic)
        return out


def topic_matches(pattern: str, topic: str) -> bool:
    """MQTT topic filter matching (`+` one level, `#` the rest); the operator CLI uses it too."""
    want, have = pattern.split("/"), topic.split("/")
    for i, part in enumerate(want):
        if part == "#":
            return True
        if i >= len(have) or (part != "+" and part != have[i]):
            return False
    return len(want) == len(have)
