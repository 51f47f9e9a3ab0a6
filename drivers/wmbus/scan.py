"""`batigate scan wmbus`: listen on a radio bus and list every meter heard.

The receiver is opened and configured exactly as the agent does (the same driver), the keys file
of the bus is used to tell which meters' telegrams decrypt, and nothing is published: the table
is the result. A meter heard several times gets an estimate of its transmit interval, which
`--add` writes into the config with a profile chosen from its medium (or `--profile`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from agent.sdk.config import DeviceConfig

from drivers.wmbus.config import WMBusBusConfig
from drivers.wmbus.driver import WMBusDriver
from drivers.wmbus.reception import Heard

PROFILE_BY_MEDIUM = {"water": "water-meter", "warm_water": "water-meter",
                     "hot_water": "water-meter", "cold_water": "water-meter",
                     "heat_outlet": "heat-meter", "heat_inlet": "heat-meter",
                     "heat_cooling": "heat-meter",
                     "heat_cost_allocator": "heat-cost-allocator"}


async def listen(bus: WMBusBusConfig, seconds: float,
                 update: Callable[[WMBusDriver], None] | None = None,
                 every: float = 1.0, devices: Iterable[DeviceConfig] = ()) -> WMBusDriver:
    """Receive for `seconds`; `update` is called every `every` seconds with the driver (its
    `reception.table()` and `stats`). `devices` (the bus's configured meters) are marked in the
    table, so the technician sees which meters heard are not in the config yet."""
    driver = WMBusDriver(bus)
    for device in devices:
        driver.attach(device, lambda values, ts: None)  # nothing is published by a scan
    task = asyncio.create_task(driver.listen())
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    try:
        while (left := end - loop.time()) > 0:
            await asyncio.sleep(min(every, left))
            if task.done():  # the listener only ends by a bug: say so, not "nothing heard"
                task.result()
            if update is not None:
                update(driver)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return driver


def interval_of(row: Heard) -> float | None:
    """The mean gap between the telegrams heard (repeats excluded), from three on."""
    if row.count < 3:
        return None
    return (row.last_heard - row.first_heard) / (row.count - 1)


def device_entry(row: Heard, bus: str, prefix: str, profile: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": f"{prefix}-{row.id.lower()}", "bus": bus, "address": row.id}
    if row.manufacturer:
        entry["manufacturer"] = row.manufacturer
    chosen = profile or PROFILE_BY_MEDIUM.get(row.medium or "")
    if chosen:
        entry["profile"] = chosen
    interval = interval_of(row)
    if interval is not None:
        entry["interval"] = f"{max(1, round(interval))}s"
    return entry
