"""`batigate scan modbus`: which unit ids answer on a Modbus bus, and who they say they are.

Every unit id asked is sent one read of holding register 0: an answer, even an exception answer,
means someone is there. The units found are then asked their basic identification (FC 43 / MEI
14, objects 0-2: vendor, product, revision) where they offer it. Declared to the agent through
`SCAN` (`agent.sdk.capabilities`), which the driver class carries.
"""

from __future__ import annotations

from typing import Any

from agent.i18n import t
from agent.sdk.capabilities import Scan, ScanOption, ScanReport, ScanRequest, ScanView, id_list
from agent.sdk.driver import BusStats
from agent.sdk.errors import DeviceUnavailable
from drivers.modbus.config import ModbusBusConfig
from drivers.modbus.link import ModbusLink, Refused

IDENTIFICATION = {0: "vendor", 1: "product", 2: "revision"}


async def scan(bus: ModbusBusConfig, units: list[int], timeout: float,
               view: ScanView | None = None) -> list[dict[str, Any]]:
    """`{"unit": N, "identification": {...} | None}` for each unit that answers; raises
    DeviceUnavailable when the bus itself cannot be opened."""
    link = ModbusLink(bus, BusStats())
    found: list[dict[str, Any]] = []
    try:
        await link.open(max(timeout, 2.0))
        # Every unit is found first, identified after: a device that mishandles FC 43 (libmodbus
        # answers it late over TCP; over RTU it misreads the frame, and so do the other libmodbus
        # slaves that hear it) then cannot hide the units probed after it.
        for done, unit in enumerate(units, 1):
            try:
                await link.open(max(timeout, 2.0))
                await link.read("holding", 0, 1, unit, timeout)
                found.append({"unit": unit})
            except Refused:  # an exception answer is an answer: someone is there
                found.append({"unit": unit})
            except DeviceUnavailable:
                pass
            if view is not None:
                view.step(t("scan.scanning", bus=bus.id), done, len(units))
        for done, entry in enumerate(found, 1):
            entry["identification"] = await identify(link, entry["unit"], timeout)
            if view is not None:
                view.step(t("scan.identification"), done, len(found))
    finally:
        link.close()
    return found


async def identify(link: ModbusLink, unit: int, timeout: float) -> dict[str, str] | None:
    """Basic device identification, None when the unit does not offer it."""
    try:
        await link.open(max(timeout, 2.0))
        info = await link.identify(unit, timeout)
    except (Refused, DeviceUnavailable):
        return None
    ident = {IDENTIFICATION[k]: _text(v) for k, v in info.items() if k in IDENTIFICATION}
    return ident or None


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return value.decode("latin-1").strip()
    if isinstance(value, list):
        return " ".join(_text(v) for v in value)
    return str(value)


async def run(request: ScanRequest, view: ScanView) -> ScanReport:
    bus = request.bus
    assert isinstance(bus, ModbusBusConfig)  # the agent hands a scan only its own buses
    found = await scan(bus, request.options["ids"], request.options["timeout"], view)
    rows = []
    for unit in found:
        ident = unit["identification"] or {}
        rows.append((str(unit["unit"]), ident.get("vendor", "—"), ident.get("product", "—"),
                     ident.get("revision", "—")))
    entries = [{"id": f"{request.prefix}-{u['unit']}", "bus": bus.id, "address": u["unit"],
                **({"profile": request.profile} if request.profile else {})} for u in found]
    return ScanReport(title=t("scan.modbus.title", count=len(found), bus=bus.id),
                      columns=[t(f"scan.modbus.col.{c}") for c in ("unit", "vendor", "product",
                                                                    "revision")],
                      rows=rows, json={"found": found}, entries=entries)


SCAN = Scan(
    command="modbus",
    help="""Find the unit ids that answer on a Modbus bus and read their identification (FC 43/14)
    where they offer it.

    \b
    Examples:
      batigate scan modbus --bus rs485-1
      batigate scan modbus --bus lan --ids 1-10 --json
      batigate scan modbus --bus rs485-1 --ids 17 --add --profile vmc-caisson
    """,
    run=run,
    options=(
        ScanOption("ids", "unit ids to try: 1-247, 1,5,17", default="1-247",
                   parse=id_list(1, 247)),
        ScanOption("timeout", "seconds to wait for each unit", default=0.3, kind=float,
                   low=0.05, high=10),
    ),
    prefix="unit",
)
