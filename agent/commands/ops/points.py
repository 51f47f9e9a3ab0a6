"""Operations on the field: read a point now, write a point, poll a device now."""

from __future__ import annotations

from agent.commands.models import (Code, DeviceArgs, Outcome, PointArgs, Problem, Status, WriteArgs,
                                   ok)
from agent.commands.registry import Call, op
from agent.commands.targets import device_named, fresh_readings, point_named, poller_of
from agent.sdk.config import DeviceConfig, PointConfig
from agent.sdk.errors import DeviceUnavailable, DriverError, PointNotWritable
from agent.sdk.writes import NotWritable, ValueRefused, check_write


@op("point.read", PointArgs)
async def point_read(call: Call, args: PointArgs) -> Outcome:
    """A fresh read from the device: value `v`, SenML unit `u`, quality `q`, time `ts`."""
    agent = call.agent
    device = device_named(agent, args.dev)
    point = point_named(device, args.n)
    reading = next((r for r in await fresh_readings(agent, device) if r.name == point.name), None)
    if reading is None:
        raise Problem(Code.FAILED, f"the driver returned no value for {point.name}")
    return ok({"dev": device.id, "n": point.name, "v": reading.value, "u": reading.unit,
               "q": reading.quality.value, "ts": round(reading.ts, 3),
               **({"reason": reading.reason} if reading.reason else {})})


def _check_value(device: DeviceConfig, point: PointConfig, value: bool | float) -> None:
    try:
        check_write(point, value, device)
    except NotWritable as exc:
        raise Problem(Code.FORBIDDEN, str(exc)) from None
    except ValueRefused as exc:
        raise Problem(Code.UNPROCESSABLE, str(exc)) from None


@op("point.write", WriteArgs, writes=True)
async def point_write(call: Call, args: WriteArgs) -> Outcome:
    """Write `v` (in the unit the config declares) to a point declared writable, within its
    min/max."""
    agent = call.agent
    device = device_named(agent, args.dev)
    point = point_named(device, args.n)
    _check_value(device, point, args.v)
    poller = poller_of(agent, device.id)
    try:
        await poller.write_now(point, args.v)
    except PointNotWritable as exc:
        raise Problem(Code.FORBIDDEN, str(exc)) from None
    except (DeviceUnavailable, TimeoutError) as exc:
        raise Problem(Code.UNAVAILABLE, f"{device.id} did not answer: {exc or 'timeout'}") from None
    except DriverError as exc:
        raise Problem(Code.FAILED, str(exc)) from None
    # The backend sees the write in the event stream and its effect in the next telemetry.
    agent.pipeline.event({"type": "point.written", "dev": device.id, "n": point.name,
                          "value": args.v, "cmd": call.cmd_id, "by": call.by})
    poller.poll_now()
    return ok({"dev": device.id, "n": point.name, "v": args.v})


@op("poll.now", DeviceArgs)
async def poll_now(call: Call, args: DeviceArgs) -> Outcome:
    """Poll the device now instead of at its next tick. Answers `accepted`."""
    device = device_named(call.agent, args.dev)
    poller_of(call.agent, device.id).poll_now()
    return Outcome(Status.ACCEPTED, Code.ACCEPTED, {"dev": device.id})
