"""One picture of a running agent, as plain JSON-able data: what the dashboard, `batigate status
--watch` (through the control socket's `snapshot` op) and the local status page all draw.

It is `status.status()` (broker, outbox, devices, alarms, clock, certificate) plus, per device,
the last value of every configured point (SenML value and unit, quality, time, the point's
`display_unit`) and the per-bus counters. Values stay in SenML units here; each view turns them
into human units in its own language.
"""

from __future__ import annotations

from typing import Any

from agent.runtime import status
from agent.runtime.context import AgentContext


def snapshot(agent: AgentContext) -> dict[str, Any]:
    body = status.status(agent)
    latest = agent.pipeline.latest
    by_id = {d["id"]: d for d in body["devices"]}
    for device in agent.config.devices:
        readings = latest.get(device.id, {})
        points = []
        for point in device.points:
            reading = readings.get(point.name)
            points.append({
                "n": point.name,
                "v": None if reading is None else reading.value,
                "u": reading.unit if reading is not None else _senml_unit(point.unit),
                "q": None if reading is None else reading.quality.value,
                "ts": None if reading is None else round(reading.ts, 3),
                **({"du": point.display_unit} if getattr(point, "display_unit", None) else {}),
            })
        # Points a driver names by itself (M-Bus records the config does not list).
        declared = {p.name for p in device.points}
        for name, reading in readings.items():
            if name not in declared:
                points.append({"n": name, "v": reading.value, "u": reading.unit,
                               "q": reading.quality.value, "ts": round(reading.ts, 3)})
        by_id[device.id]["points"] = points
    drivers = {bus.id: bus.driver for bus in agent.config.buses}
    body["buses"] = {bus_id: {"driver": drivers.get(bus_id), **driver.stats.as_dict()}
                     for bus_id, driver in agent.drivers.items()}
    body["ts"] = round(agent.clock.time(), 3)
    return body


def _senml_unit(unit: str | None) -> str | None:
    from agent.sdk import units  # noqa: PLC0415

    return units.normalize(unit)[0]
