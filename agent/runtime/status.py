"""`batigate status`: the running agent's state in one document (broker, devices, alarms, outbox,
clock, certificate), for the control socket and the dashboard snapshot."""

from __future__ import annotations

from typing import Any

from agent.runtime import health
from agent.runtime.context import AgentContext


def status(agent: AgentContext) -> dict[str, Any]:
    """What `batigate status` shows: everything a technician checks first."""
    config = agent.config
    now = agent.clock.time()
    uplink = agent.uplink
    devices = []
    for device in config.devices:
        poller = agent.pollers.get(device.id)
        last_ok = poller.stats.last_ok if poller else None
        devices.append({
            "id": device.id, "bus": device.bus,
            "state": poller.state.value if poller else "not polled",
            "last_reading_age": None if last_ok is None else round(now - last_ok, 1),
            "polls": poller.stats.polls if poller else 0,
            "failures": poller.stats.failures if poller else 0,
            "last_error": poller.stats.last_error if poller else None,
        })
    outbox = agent.outbox.stats()
    tls = config.mqtt.tls
    return {
        "gw": config.gateway.id, "site": config.gateway.site, "sess": agent.session,
        "uptime": round(agent.clock.monotonic() - agent.started, 1),
        "broker": {"host": config.mqtt.host, "port": config.mqtt.port, "tls": tls is not None,
                   "connected": uplink.connected.is_set(), "connections": uplink.connections,
                   "published": uplink.published, "refused": uplink.refused,
                   "last_error": uplink.last_error},
        "command_auth": agent.commands.auth,
        "devices": devices,
        "alarms": agent.engine.active() if agent.engine is not None else [],
        "outbox": {"depth": outbox["depth"], "oldest_age": outbox["oldest_age"],
                   "dropped": outbox["dropped"]},
        "clock_synced": health.clock_synced(agent),
        "cert": {"path": str(tls.cert) if tls and tls.cert else None,
                 "days_left": health.cert_days(tls.cert if tls else None, now=now)},
    }
