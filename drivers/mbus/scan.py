"""Find the meters on an M-Bus line: by primary address and by secondary-address search.

Primary scan: SND_NKE to every address 0..250; an E5 means a meter is there, and one REQ_UD2
tells which (id, manufacturer, medium). Silence is not retried: an empty address is the common
case and a retry would double a scan that already takes 251 timeouts.

Secondary search (the tree walk of EN 13757-3 wildcard selection): select with the leftmost id
digit fixed to 0..9 and the rest wildcards (F). No E5: nobody matches, skip the subtree. E5:
at least one meter is selected, so ask it for data with REQ_UD2 to 0xFD. A clean telegram means
exactly one meter; garbled bytes mean several answered at once (their E5s were identical, their
telegrams are not), so fix the next digit and walk deeper. Meters that collide even with all 8
digits fixed (same id, different manufacturer) are reported as collisions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.i18n import t
from agent.sdk.capabilities import Scan, ScanOption, ScanReport, ScanRequest, ScanView, id_list
from agent.sdk.driver import BusStats
from drivers.mbus import frames
from drivers.mbus.codec import MBusDecodeError, Telegram, decode_frame
from drivers.mbus.config import MAX_PRIMARY, MBusBusConfig
from drivers.mbus.link import MBusLink

DEFAULT_TIMEOUT = 0.3  # as libmbus at 2400 baud; the standard's worst case is 0.19 s
Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass(frozen=True, slots=True)
class FoundMeter:
    how: Literal["primary", "secondary"]
    primary: int  # the address it answered at (a secondary find: its own link address)
    id: str  # 8 digits, as printed on the meter
    manufacturer: str | None
    version: int | None
    medium: str | None
    medium_code: int | None

    def config(self) -> dict[str, Any]:
        """The addressing part of a `devices:` entry for this meter."""
        if self.how == "primary":
            return {"address": self.primary}
        entry: dict[str, Any] = {"secondary": self.id}
        if self.manufacturer:
            entry["manufacturer"] = self.manufacturer
        return entry


@dataclass(slots=True)
class ScanResult:
    meters: list[FoundMeter] = field(default_factory=list)
    # Where several meters answered and could not be told apart: "primary 5" (two meters
    # configured to one address) or "secondary 12345678".
    collisions: list[str] = field(default_factory=list)


def _found(how: Literal["primary", "secondary"], telegram: Telegram) -> FoundMeter:
    return FoundMeter(how, telegram.address, telegram.id.zfill(8), telegram.manufacturer,
                      telegram.version, telegram.medium, telegram.medium_code)


class Scanner:
    """Scans over an open link; `scan()` below makes one for a bus config."""

    def __init__(self, link: MBusLink, timeout: float = DEFAULT_TIMEOUT,
                 progress: Progress | None = None) -> None:
        self.link = link
        self.timeout = timeout
        self.progress = progress
        # Long enough after an answer for a second, slightly later slave to show up.
        self.settle = 3 * link.bus.char_time

    async def _ask(self, request: bytes, retries: int = 0) -> tuple[bytes | None, bool]:
        """(frame, collision): the answer if it was clean; collision when bytes were garbled."""
        collision = False
        for _ in range(retries + 1):
            answer = await self.link.transact(request, self.timeout, self.settle)
            if answer.frame is not None and answer.junk == 0:
                return answer.frame, False
            collision = collision or answer.junk > 0 or answer.frame is not None
        return None, collision

    async def _telegram(self, address: int) -> tuple[Telegram | None, bool]:
        frame, collision = await self._ask(frames.req_ud2(address), self.link.bus.retries)
        if frame is None or frame[0] != frames.START_LONG:
            return None, collision or frame is not None
        try:
            return decode_frame(frame), False
        except MBusDecodeError:
            return None, True  # a checksum-valid mix of two telegrams is possible, if rare

    async def _alone(self, telegram: Telegram) -> bool:
        """Whether a telegram read after a wildcard selection came from one meter.

        Meters that answer together are merged bit by bit (AND) on the bus; when their telegrams
        differ little (same values, ids a few bits apart) the merge can carry a valid checksum and
        decode as a meter that does not exist. Selecting the telegram's exact address and reading
        it again tells: a real meter answers alone with the same id, a phantom gets no answer.
        """
        ack, _ = await self._ask(frames.select_secondary(
            telegram.id.zfill(8), telegram.manufacturer, telegram.version, telegram.medium_code))
        if ack is None or ack[0] != frames.ACK:
            return False
        again, _ = await self._telegram(frames.ADDR_NETWORK_LAYER)
        return again is not None and again.id == telegram.id

    async def primary(self, addresses: Iterable[int] = range(MAX_PRIMARY + 1)) -> ScanResult:
        result = ScanResult()
        todo = list(addresses)
        for done, address in enumerate(todo, 1):
            frame, collision = await self._ask(frames.snd_nke(address))
            if self.progress is not None:
                self.progress("primary", done, len(todo))
            if frame is None and not collision:
                continue
            telegram, collision = await self._telegram(address)
            if telegram is not None:
                result.meters.append(_found("primary", telegram))
            else:
                result.collisions.append(f"primary {address}")
        return result

    async def secondary(self) -> ScanResult:
        result = ScanResult()
        await self._walk("", result)
        await self._ask(frames.snd_nke(frames.ADDR_NETWORK_LAYER))  # deselect whoever is left
        return result

    async def _walk(self, prefix: str, result: ScanResult) -> None:
        for digit in "0123456789":
            fixed = prefix + digit
            mask = fixed + "F" * (8 - len(fixed))
            if self.progress is not None and not prefix:
                self.progress("secondary", int(digit) + 1, 10)
            ack, collision = await self._ask(frames.select_secondary(mask))
            if ack is None and not collision:
                continue  # nobody's id starts like this
            if ack is not None and ack[0] == frames.ACK:
                telegram, collision = await self._telegram(frames.ADDR_NETWORK_LAYER)
                if telegram is not None and await self._alone(telegram):
                    result.meters.append(_found("secondary", telegram))
                    continue
            if len(fixed) == 8:
                # Several meters share this id (other manufacturers), or one is selected but
                # sends no data: either way the technician must look.
                result.collisions.append(f"secondary {fixed}")
            else:
                await self._walk(fixed, result)


async def scan(bus: MBusBusConfig, *, primary: bool = True, secondary: bool = True,
               addresses: Iterable[int] = range(MAX_PRIMARY + 1),
               timeout: float = DEFAULT_TIMEOUT, progress: Progress | None = None,
               stats: BusStats | None = None) -> ScanResult:
    """Scan the bus (nothing else may use the line meanwhile: stop the agent first)."""
    link = MBusLink(bus, stats if stats is not None else BusStats())
    scanner = Scanner(link, timeout, progress)
    result = ScanResult()
    try:
        if primary:
            found = await scanner.primary(addresses)
            result.meters += found.meters
            result.collisions += found.collisions
        if secondary:
            found = await scanner.secondary()
            result.meters += found.meters
            result.collisions += found.collisions
    finally:
        await link.close()
    return _reconcile(result)


def _reconcile(result: ScanResult) -> ScanResult:
    """Drop primary finds that are two telegrams merged by the bus.

    Meters answering together are combined bit by bit (AND). When their telegrams differ only a
    little (same values, ids a few bits apart), the merged frame can carry a valid checksum and
    decode as a meter that does not exist. The secondary search reads each meter alone: if it
    finds several at one link address, that address is a collision, whatever its primary read
    seemed to say.
    """
    by_link: dict[int, int] = {}
    for meter in result.meters:
        if meter.how == "secondary":
            by_link[meter.primary] = by_link.get(meter.primary, 0) + 1
    shared = {address for address, count in by_link.items() if count > 1}
    if not shared:
        return result
    kept = [m for m in result.meters if not (m.how == "primary" and m.primary in shared)]
    collisions = list(result.collisions)
    for address in sorted(shared):
        if f"primary {address}" not in collisions:
            collisions.append(f"primary {address}")
    return ScanResult(kept, collisions)


# -- `batigate scan mbus` (declared to the agent as SCAN) ----------------------------------------


async def run(request: ScanRequest, view: ScanView) -> ScanReport:
    bus, options = request.bus, request.options
    assert isinstance(bus, MBusBusConfig)  # the agent hands a scan only its own buses

    def report(phase: str, done: int, total: int) -> None:
        view.step(t(f"scan.mbus.phase.{phase}") if phase in ("primary", "secondary") else phase,
                  done, total)

    result = await scan(bus, primary=options["primary"], secondary=options["secondary"],
                        addresses=options["addresses"], timeout=options["timeout"],
                        progress=report)
    meters = _unique(result.meters)
    entries = [{"id": f"{request.prefix}-{m.id}", "bus": bus.id, **m.config(),
                **({"profile": request.profile} if request.profile else {})} for m in meters]
    found = [{"how": m.how, "primary": m.primary, "id": m.id, "manufacturer": m.manufacturer,
              "version": m.version, "medium": m.medium} for m in meters]
    rows = [(t(f"scan.mbus.how.{m['how']}"), str(m["primary"]), m["id"], m["manufacturer"] or "—",
             str(m["version"]), m["medium"] or "—") for m in found]
    notes = [t("scan.mbus.collision", where=_collision_where(collision),
               advice=_collision_advice(collision, meters)) for collision in result.collisions]
    columns = ("how", "primary", "id", "manufacturer", "version", "medium")
    return ScanReport(title=t("scan.mbus.title", count=len(found), bus=bus.id),
                      columns=[t(f"scan.mbus.col.{c}") for c in columns], rows=rows,
                      json={"found": found, "collisions": result.collisions}, entries=entries,
                      notes=notes)


def _unique(meters: list[FoundMeter]) -> list[FoundMeter]:
    """A meter found by both searches is listed once, by its primary address."""
    seen: set[str] = set()
    out = []
    for meter in meters:
        if meter.id not in seen:
            seen.add(meter.id)
            out.append(meter)
    return out


def _collision_advice(collision: str, meters: list[FoundMeter]) -> str:
    """What a technician can do about meters that answer together (e.g. factory address 0)."""
    kind, _, where = collision.partition(" ")
    shared = [m.id for m in meters if kind == "primary" and m.how == "secondary"
              and str(m.primary) == where]
    if shared:
        return t("scan.mbus.shared", count=len(shared), meters=", ".join(shared))
    return t("scan.mbus.several")


def _collision_where(collision: str) -> str:
    """`primary 0` / `secondary 1234FFFF...` (the scan's words) in the technician's language."""
    kind, _, where = collision.partition(" ")
    if kind in ("primary", "secondary"):
        return t(f"scan.mbus.at.{kind}", where=where)
    return collision


SCAN = Scan(
    command="mbus",
    help="""Find the meters on an M-Bus line: primary addresses 0-250, then a secondary-address
    wildcard search (finds meters that share or lack a primary address).

    \b
    Examples:
      batigate scan mbus --bus meters
      batigate scan mbus --bus meters --no-secondary --addresses 1-20 --json
      batigate scan mbus --bus meters --add --profile water-meter
    """,
    run=run,
    options=(
        ScanOption("primary", "try primary addresses 0-250", default=True, kind=bool),
        ScanOption("secondary", "secondary-address wildcard search", default=True, kind=bool),
        ScanOption("addresses", "primary addresses to try", default="0-250",
                   parse=id_list(0, MAX_PRIMARY)),
        ScanOption("timeout", "seconds to wait for each answer", default=DEFAULT_TIMEOUT,
                   kind=float, low=0.05, high=10),
    ),
    prefix="meter",
)
