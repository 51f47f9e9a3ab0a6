"""What happens to one radio telegram once a receiver framed it: the driver's pure part.

    Radio frame ─► repeat? (same bytes within repeat_window) ─► dropped, counted
               └─► decode (telegram.py: CRCs, ELL/AFL/TPL, decryption, records)
                     ├─ bad CRC / malformed / unsupported ─► counted, dropped
                     ├─ no key / wrong key ─► counted; a configured meter's points go BAD
                     └─ records ─► the meter configured with that id ─► point values + RSSI
                                   └─ none: counted as "unknown meter"
    every meter heard, configured or not ─► `heard` (bounded), for `scan wmbus`

No I/O here, so the fuzz tests drive it directly as well as through a stick.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agent.sdk.driver import BusStats, Hear
from agent.sdk.models import PointValue, Quality
from drivers.mbus import mapping
from drivers.wmbus.compact import CompactFormats
from drivers.wmbus.config import WMBusDeviceConfig
from drivers.wmbus.errors import CrcError, KeyMissing, KeyWrong, SenderHeader, TelegramError
from drivers.wmbus.radio import Radio
from drivers.wmbus.telegram import decode_telegram

log = logging.getLogger(__name__)

MAX_HEARD = 2000  # meters remembered for the scan (a dense street hears a few hundred)
MAX_RECENT = 4096  # telegrams remembered for repeat detection
METER_CLOCK_TOLERANCE = 86400.0  # a meter time further than this from ours is not used
METER_CLOCK_RESOLUTION = 60.0  # type F dates have whole minutes: within this, "now" is meant
COUNTERS = ("telegrams", "bad_crc", "malformed", "duplicates", "undecryptable",
            "unknown_meters", "accepted", "meter_clock_ignored")


@dataclass(slots=True)
class Heard:
    """One meter as the receiver hears it (a row of `scan wmbus`)."""

    id: str
    manufacturer: str | None
    medium: str | None
    version: int | None
    encrypted: bool | None = None
    key: str = "?"  # "yes", "no", "wrong", "-" (not encrypted), "?" (not decoded yet)
    rssi: float | None = None
    count: int = 0
    first_heard: float = 0.0
    last_heard: float = 0.0
    configured: str | None = None  # the device id when the config has this meter


@dataclass(slots=True)
class _Listener:
    device: WMBusDeviceConfig
    hear: Hear
    problem: str | None = None  # the last one logged, to log changes only


class Reception:
    def __init__(self, stats: BusStats, *, keys: Any, repeat_window: float,
                 clock: Callable[[], float], monotonic: Callable[[], float]) -> None:
        self.stats = stats
        for name in COUNTERS:
            stats.extra.setdefault(name, 0)
        self.keys = keys
        self.repeat_window = repeat_window
        self.clock = clock
        self.monotonic = monotonic
        self.listeners: dict[str, _Listener] = {}
        self.heard: OrderedDict[str, Heard] = OrderedDict()
        # telegram bytes -> [when first heard, the device it went to (None: none)]
        self._recent: OrderedDict[bytes, list[Any]] = OrderedDict()
        self.compact = CompactFormats()  # Kamstrup format signatures learnt from full frames

    # -- devices ---------------------------------------------------------------------------------

    def attach(self, device: WMBusDeviceConfig, hear: Hear) -> None:
        self.listeners[device.id] = _Listener(device, hear)

    def detach(self, device_id: str) -> None:
        self.listeners.pop(device_id, None)

    def _listener(self, ident: str, manufacturer: str | None,
                  version: int | None) -> _Listener | None:
        for listener in self.listeners.values():
            if listener.device.matches(ident, manufacturer, version):
                return listener
        return None

    # -- one telegram ----------------------------------------------------------------------------

    def receive(self, radio: Radio) -> None:
        extra = self.stats.extra
        extra["telegrams"] += 1
        if self._repeat(radio.frame):
            extra["duplicates"] += 1
            # No new values, but the meter was heard: a meter whose telegrams do not change
            # (no access number) must not be taken for a silent one.
            listener = self.listeners.get(self._recent[radio.frame][1] or "")
            if listener is not None:
                listener.hear([], self.clock())
            return
        try:
            telegram = decode_telegram(radio.frame, self.keys, compact=self.compact,
                                       frame_format="stripped" if radio.crc_checked else "auto")
        except CrcError:
            extra["bad_crc"] += 1
            return
        except (KeyMissing, KeyWrong) as exc:
            extra["undecryptable"] += 1
            self._undecryptable(exc.header, radio, exc)
            return
        except TelegramError as exc:
            extra["malformed"] += 1
            log.debug("telegram dropped: %s", exc)
            return
        manufacturer, ident, version, _ = telegram.address_key()
        row = self._note(ident, manufacturer, telegram.medium, version, radio)
        mode = telegram.encryption.mode
        row.encrypted = bool(mode)
        row.key = "yes" if mode else "-"
        listener = self._listener(ident, manufacturer, version)
        if listener is None:
            extra["unknown_meters"] += 1
            return
        row.configured = listener.device.id
        records = list(telegram.records)
        device = listener.device
        values = mapping.pick(device.points, records) if device.points else mapping.auto(records)
        if radio.rssi is not None:
            values.append(PointValue("rssi", round(radio.rssi, 1), unit="dBm"))
        extra["accepted"] += 1
        self._recent[radio.frame][1] = device.id
        self._clear_problem(listener)
        listener.hear(values, self._timestamp(telegram.meter_time))

    def _undecryptable(self, header: SenderHeader | None, radio: Radio, exc: Exception) -> None:
        if header is None:
            return
        ident, manufacturer, version = header.id, header.manufacturer, header.version
        row = self._note(ident, manufacturer, header.medium, version, radio)
        row.encrypted = True
        row.key = "wrong" if isinstance(exc, KeyWrong) else "no"
        listener = self._listener(ident, manufacturer, version)
        if listener is None:
            self.stats.extra["unknown_meters"] += 1
            return
        row.configured = listener.device.id
        problem = ("the key in the keys file does not decrypt its telegrams (wrong key?)"
                   if isinstance(exc, KeyWrong) else "its telegrams are encrypted and the keys "
                   "file has no key for it")
        if listener.problem != problem:
            listener.problem = problem
            log.warning("meter %s (%s): %s", listener.device.id, ident, problem)
        # Heard, so not "down"; but no value can be trusted: every point says so.
        values = [PointValue(p.name, None, Quality.BAD) for p in listener.device.points]
        listener.hear(values, self.clock())

    def _clear_problem(self, listener: _Listener) -> None:
        if listener.problem is not None:
            log.info("meter %s: telegrams decode again", listener.device.id)
            listener.problem = None

    def _repeat(self, frame: bytes) -> bool:
        now = self.monotonic()
        recent = self._recent
        while recent:  # oldest first: drop what has left the window
            seen = next(iter(recent.values()))[0]
            if now - seen <= self.repeat_window and len(recent) < MAX_RECENT:
                break
            recent.popitem(last=False)
        if frame in recent:
            return True
        recent[frame] = [now, None]
        return False

    def _note(self, ident: str, manufacturer: str | None, medium: str | None,
              version: int | None, radio: Radio) -> Heard:
        key = f"{ident}/{manufacturer}/{version}"
        row = self.heard.pop(key, None) or Heard(ident, manufacturer, medium, version)
        row.count += 1
        row.last_heard = self.clock()
        if row.count == 1:
            row.first_heard = row.last_heard
        if radio.rssi is not None:
            row.rssi = radio.rssi
        self.heard[key] = row  # most recent last
        while len(self.heard) > MAX_HEARD:
            self.heard.popitem(last=False)
        return row

    def _timestamp(self, meter_time: Any) -> float:
        """The meter's own time when it says the values are older than this telegram, else the
        reception time.

        Most meters date their telegram to the minute (type F): a time within that minute of
        ours means "now", and the reception time is the same instant, more precisely (rules
        that time durations need it). An older time (a stored value sent later) is the meter's
        to give. A time in the future, or more than a day old, is a wrong meter clock: not used,
        counted in `meter_clock_ignored`.
        """
        now = self.clock()
        ts = _epoch(meter_time)
        if ts is None:
            return now
        age = now - ts
        if not math.isfinite(ts) or age < -METER_CLOCK_RESOLUTION or age > METER_CLOCK_TOLERANCE:
            self.stats.extra["meter_clock_ignored"] += 1
            return now
        return now if age <= METER_CLOCK_RESOLUTION else ts

    def table(self) -> list[Heard]:
        return list(self.heard.values())


def _epoch(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, datetime):
        return value.timestamp()  # naive: the gateway's local time, as the meter's clock is set
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip()).timestamp()
        except ValueError:
            return None
    return None


def rows(heard: Iterable[Heard]) -> Sequence[dict[str, Any]]:
    return [{"id": h.id, "manufacturer": h.manufacturer, "medium": h.medium,
             "version": h.version, "encrypted": h.encrypted, "key": h.key,
             "rssi": h.rssi, "count": h.count, "last_heard": round(h.last_heard, 3),
             "configured": h.configured} for h in heard]
