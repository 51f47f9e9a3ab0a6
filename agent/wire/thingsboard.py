"""The `thingsboard` wire profile: the ThingsBoard gateway MQTT API.

    v1/gateway/connect      {"device": "gw-0042/vmc-b", "type": profile}   each connection, rebirth
    v1/gateway/attributes   {"gw-0042/vmc-b": {gateway, site, bus, profile, points, state, …}}
    v1/gateway/telemetry    {"gw-0042/vmc-b": [{"ts": ms, "values": {point: value}}]}
    v1/gateway/disconnect   {"device": …}   a device a config apply removed
    v1/gateway/rpc (in)     {"device", "data": {"id", "method", "params"}} -> our commands
    v1/gateway/rpc (out)    {"device", "id", "data": answer}

ThingsBoard devices are named `{gw}/{dev}`, so the gateways of one broker never collide when it
is bridged to ThingsBoard (a mosquitto `bridge` with `topic v1/gateway/# both 1`), and each
gateway takes the RPCs of its own devices only. Telemetry carries the reading's own time in
milliseconds, so a backlog replayed after an outage is stored at the right time (ThingsBoard has
no other "historical" flag). RPC methods are our command ops on that device: `point.read`,
`poll.now`, and `point.write` only with `thingsboard.writes: true` (RPC is not signed: the
broker's ACL is the guard); they run through the command layer (argument models, limits, audit).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from agent import __version__
from agent.runtime.context import AgentContext
from agent.store.outbox import Message
from agent.wire import Publication

log = logging.getLogger(__name__)

PREFIX = "v1/gateway"
MAX_RPC = 4096  # bytes of one RPC request
READ_ONLY = frozenset({"point.read", "poll.now"})


class ThingsBoard:
    def __init__(self, agent: AgentContext, wire: Any) -> None:
        self.agent = agent
        self.wire = wire
        self.connected: set[str] = set()  # device names announced, to disconnect removed ones

    @property
    def gw(self) -> str:
        return str(self.agent.config.gateway.id)

    def name(self, dev: str) -> str:
        return f"{self.gw}/{dev}"

    def announce(self) -> list[Publication]:
        config = self.agent.config
        out: list[Publication] = []
        attributes: dict[str, Any] = {}
        current = set()
        for device in config.devices:
            name = self.name(device.id)
            current.add(name)
            out.append((f"{PREFIX}/connect",
                        _json({"device": name, "type": device.profile or "batigate device"}),
                        False))
            attributes[name] = {
                "gateway": self.gw, "site": config.gateway.site, "bus": device.bus,
                "profile": device.profile, "poll_s": device.poll, "agent": __version__,
                "config": config.digest,
                "points": {p.name: {"unit": _unit(p.unit), "writable": p.writable}
                           for p in device.points}}
        if attributes:
            out.append((f"{PREFIX}/attributes", _json(attributes), False))
        out.extend((f"{PREFIX}/disconnect", _json({"device": name}), False)
                   for name in sorted(self.connected - current))
        self.connected = current
        return out

    def render(self, message: Message, body: dict[str, Any], hist: bool) -> list[Publication]:
        parts = message.topic.split("/")
        if parts[0] == "dev" and len(parts) == 3 and parts[2] == "tm":
            return [self._telemetry(parts[1], message, body)]
        if parts[0] == "dev" and len(parts) == 3 and parts[2] == "state":
            if body.get("state") == "disabled":  # removed by a config apply
                return [(f"{PREFIX}/disconnect", _json({"device": self.name(parts[1])}), False)]
            state = {"state": body.get("state"), "state_since": body.get("since")}
            if body.get("reason"):
                state["state_reason"] = body["reason"]
            return [(f"{PREFIX}/attributes", _json({self.name(parts[1]): state}), False)]
        if message.topic == "alarms":
            by_device: dict[str, list[str]] = {self.name(d.id): []
                                               for d in self.agent.config.devices}
            for alarm in body.get("active") or []:
                if isinstance(alarm, dict) and alarm.get("device"):
                    by_device.setdefault(self.name(str(alarm["device"])), []).append(
                        str(alarm.get("alarm")))
            return [(f"{PREFIX}/attributes",
                     _json({n: {"active_alarms": a} for n, a in by_device.items()}), False)]
        return []

    def _telemetry(self, dev: str, message: Message, body: dict[str, Any]) -> Publication:
        """One entry per distinct reading time of the pack (SenML `t` offsets), in ms."""
        entries: dict[int, dict[str, Any]] = {}
        bt = message.ts
        for record in body.get("e") or []:
            bt = record.get("bt", bt)
            name = record.get("n")
            value = next((record[k] for k in ("v", "vb", "vs") if k in record), None)
            if not isinstance(name, str) or value is None:
                continue  # bad quality: no value, nothing to store
            ts = round((bt + record.get("t", 0)) * 1000)
            entries.setdefault(ts, {})[name] = value
        rows = [{"ts": ts, "values": values} for ts, values in sorted(entries.items())]
        return (f"{PREFIX}/telemetry", _json({self.name(dev): rows}), False)

    def subscriptions(self) -> list[str]:
        return [f"{PREFIX}/rpc"]

    async def on_message(self, topic: str, payload: bytes) -> list[Publication]:
        """An RPC for one of our devices: run it, answer on v1/gateway/rpc. Others' RPCs (same
        bridged topic) are ignored; a malformed one is counted and answered with an error when
        it names our device."""
        from agent.runtime import control  # noqa: PLC0415

        try:
            if len(payload) > MAX_RPC:
                raise ValueError(f"larger than {MAX_RPC} bytes")
            request = json.loads(payload)
            if "id" in request:  # a reply (ours, on the same topic): not a request
                return []
            device = request["device"]
            data = request["data"]
            rpc_id = data["id"]
        except (ValueError, KeyError, TypeError) as exc:
            self.wire.dropped += 1
            log.warning("thingsboard: unreadable RPC ignored: %s", exc)
            return []
        if not isinstance(device, str) or not device.startswith(f"{self.gw}/"):
            return []  # another gateway's device
        dev = device.removeprefix(f"{self.gw}/")
        method = data.get("method")
        params = data.get("params") if isinstance(data.get("params"), dict) else {}
        allowed = READ_ONLY | ({"point.write"} if self.agent.config.mqtt.thingsboard.writes
                               else set())
        if method not in allowed:
            from agent.commands import models  # noqa: PLC0415

            self.wire.dropped += 1
            refusal = models.Problem(models.Code.FORBIDDEN, f"method {method!r} is not allowed "
                                     f"over RPC (allowed: {', '.join(sorted(allowed))})")
            answer = models.answer(f"rpc-{rpc_id}"[:128], refusal, op=str(method)[:64],
                                   ts=self.agent.clock.time())
        else:
            answer = await control.dispatch(self.agent, str(method), {**params, "dev": dev},
                                            "thingsboard")
        return [(f"{PREFIX}/rpc", _json({"device": device, "id": rpc_id, "data": answer}), False)]


def _unit(unit: str | None) -> str | None:
    from agent.sdk import units  # noqa: PLC0415

    return units.normalize(unit)[0]


def _json(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, default=str).encode()
