"""What a command acts on: the device and point it names, the poller that reaches it, fresh
readings. Shared by the operations and the control socket."""

from __future__ import annotations

from typing import Any

from agent.commands.models import Code, Problem
from agent.sdk.config import DeviceConfig, PointConfig
from agent.runtime.context import AgentContext
from agent.runtime.normalize import Normalizer
from agent.sdk.errors import DeviceUnavailable, DriverError
from agent.sdk.models import Reading


def device_named(agent: AgentContext, dev: str) -> DeviceConfig:
    for device in agent.config.devices:
        if device.id == dev:
            return device
    raise Problem(Code.NOT_FOUND, f"unknown device {dev!r}")


def point_named(device: DeviceConfig, name: str) -> PointConfig:
    for point in device.points:
        if point.name == name:
            return point
    raise Problem(Code.NOT_FOUND, f"device {device.id} has no point {name!r}")


def poller_of(agent: AgentContext, dev: str) -> Any:
    poller = agent.pollers.get(dev)
    if poller is None:
        raise Problem(Code.UNAVAILABLE, f"the drivers are not running; {dev} cannot be reached")
    return poller


async def fresh_readings(agent: AgentContext, device: DeviceConfig) -> list[Reading]:
    """Every point of `device` read now (under the bus lock), normalized; device and driver
    failures become the command's answer."""
    try:
        values = await poller_of(agent, device.id).read_now()
    except (DeviceUnavailable, TimeoutError) as exc:
        raise Problem(Code.UNAVAILABLE, f"{device.id} did not answer: {exc or 'timeout'}") from None
    except DriverError as exc:
        raise Problem(Code.FAILED, str(exc)) from None
    synced = bool(agent.pipeline.clock_synced())
    return Normalizer(device).readings(values, agent.clock.time(), synced=synced)
