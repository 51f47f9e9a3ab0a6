"""`batigate scan wmbus`: listen on a radio bus and list every meter heard.

The receiver is opened and configured exactly as the agent does (the same driver), the keys file
of the bus is used to tell which meters' telegrams decrypt, and nothing is published: the table
is the result. A meter heard several times gets an estimate of its transmit interval, which
`--add` writes into the config with a profile chosen from its medium (or `--profile`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

from agent.i18n import t
from agent.sdk import registry
from agent.sdk.capabilities import Scan, ScanOption, ScanReport, ScanRequest, ScanView
from agent.sdk.config import DeviceConfig
from agent.sdk.durations import parse_duration
from drivers.wmbus.config import WMBusBusConfig
from drivers.wmbus.reception import Heard, rows

PROFILE_BY_MEDIUM = {"water": "water-meter", "warm_water": "water-meter",
                     "hot_water": "water-meter", "cold_water": "water-meter",
                     "heat_outlet": "heat-meter", "heat_inlet": "heat-meter",
                     "heat_cooling": "heat-meter",
                     "heat_cost_allocator": "heat-cost-allocator"}


async def listen(bus: WMBusBusConfig, seconds: float, update: Callable[[Any], None] | None = None,
                 every: float = 1.0, devices: Iterable[DeviceConfig] = ()) -> Any:
    """Receive for `seconds` with the bus's driver (found through the registry, as the agent
    does: the driver declares this scan, so this module does not import it back); `update` is
    called every `every` seconds with the driver (its `reception.table()` and `stats`).
    `devices` (the bus's configured meters) are marked in the table, so the technician sees
    which meters heard are not in the config yet."""
    driver = registry.load(registry.DRIVERS, bus.driver)(bus)
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


# -- `batigate scan wmbus` (declared to the agent as SCAN) ---------------------------------------


async def run(request: ScanRequest, view: ScanView) -> ScanReport:
    bus, options = request.bus, request.options
    assert isinstance(bus, WMBusBusConfig)  # the agent hands a scan only its own buses
    seconds = options["listen"]
    driver = await listen(bus, seconds, lambda d: view.show(report(d, final=False)),
                          devices=request.devices)
    done = report(driver, final=True)
    heard = driver.reception.table()
    done.json = {"seconds": seconds, "heard": list(rows(heard)),
                 "counters": driver.stats.as_dict()}
    done.entries = [device_entry(h, bus.id, request.prefix, request.profile) for h in heard
                    if h.configured is None and h.count >= options["min_count"]]
    return done


def report(driver: Any, *, final: bool) -> ScanReport:
    """The table of the meters heard, the strongest first (live while listening)."""
    heard = sorted(driver.reception.table(), key=lambda h: (h.rssi is None, -(h.rssi or 0)))
    extra = driver.stats.extra
    state = "" if final else t("scan.wmbus.listening" if extra.get("receiving")
                               else "scan.wmbus.opening")
    now = time.time()
    lines = [(h.id, h.manufacturer or "—", h.medium or "—",
              "—" if h.version is None else str(h.version),
              "?" if h.encrypted is None else t(f"value.{str(h.encrypted).lower()}"),
              _key_state(h.key), "—" if h.rssi is None else f"{h.rssi:.0f}", str(h.count),
              t("scan.wmbus.ago", s=f"{now - h.last_heard:.0f}"), h.configured or "—")
             for h in heard]
    columns = ("id", "manufacturer", "medium", "version", "encrypted", "key", "rssi", "count",
               "last", "device")
    return ScanReport(
        title=t("scan.wmbus.title", count=len(heard), bus=driver.bus.id) + state,
        caption=t("scan.wmbus.caption", telegrams=extra["telegrams"],
                  repeats=extra["duplicates"], bad_crc=extra["bad_crc"],
                  undecryptable=extra["undecryptable"], garbage=driver.stats.garbage),
        columns=[t(f"scan.wmbus.col.{c}") for c in columns], rows=lines, json={})


def _key_state(key: str) -> str:
    """The reception table's `yes` / `no` / `wrong` / `-` in the technician's language."""
    return t(f"scan.wmbus.key.{key}") if key in ("yes", "no", "wrong") else key


SCAN = Scan(
    command="wmbus",
    help="""Listen on a radio bus and show every meter heard, live: id, manufacturer, medium,
    version, encrypted, key (yes / no / wrong / - for clear), RSSI, count, last heard.

    \b
    Examples:
      batigate scan wmbus --bus radio --listen 10m
      batigate scan wmbus --bus radio --listen 30m --add --min-count 2
      batigate scan wmbus --bus radio --listen 5m --json
    """,
    run=run,
    options=(
        ScanOption("listen", "how long to listen: 30s, 10m, 1h (meters send every 8 s to hours)",
                   default="10m", parse=parse_duration),
        ScanOption("min-count", "--add only meters heard at least this many times (a "
                   "neighbour's meter at the edge of range is heard rarely)", default=1,
                   kind=int, low=1),
    ),
    prefix="meter",
)
