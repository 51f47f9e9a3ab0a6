"""The live building dashboard: one screen, refreshed in place, that fits 80×24.

    ┌ header: gateway, site, broker link, outbox depth and oldest age, clock
    │ active alarms: severity, alarm, device/point, value in human units, age
    │ devices: state and last values in human units (as many as the width holds)
    └ per-bus counters, and how to stop

`lines(snapshot, width, height)` builds the screen as rich markup lines, never wider or taller
than asked (what does not fit is counted: "… 3 more devices"); `show_live` redraws it with rich
Live while on a terminal. Off a terminal (a pipe, a log file), `PlainReport` prints one line per
change instead (alarm raised or cleared, device state, broker link), so a log stays readable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from agent.display.units import age, human
from agent.i18n import t

SEVERITY_STYLE = {"critical": "bold white on red", "major": "bold red", "minor": "yellow",
                  "warning": "yellow", "info": "cyan"}
STATE_STYLE = {"ok": "green", "down": "bold red"}
SEVERITY_ORDER = ("critical", "major", "minor", "warning", "info")


def value_text(point: dict[str, Any], lang: str | None = None) -> str:
    """`112 Pa`, `25,000 kWh`, `yes`; `—` without a reading."""
    shown, unit = human(point.get("v"), point.get("u"), point.get("du"), lang)
    return f"{shown} {unit}".rstrip()


def lines(snap: dict[str, Any], width: int = 80, height: int = 24,
          lang: str | None = None, note: str | None = None) -> list[str]:
    """The screen as rich markup lines: at most `height` lines of at most `width` cells."""
    now = snap.get("ts") or time.time()
    head = _header(snap, lang)
    alarms = _alarms(snap, now, lang)
    buses = _buses(snap, lang)
    foot = [f"[dim]{escape(t('dash.stop', lang))}"
            + (f"  ·  {escape(note)}" if note else "") + "[/]"]
    room = height - len(head) - len(buses) - len(foot) - 1  # 1: the devices' title
    if len(alarms) > max(1, room // 2):  # alarms first, but devices keep half the room
        keep = max(1, room // 2) - 1
        alarms = [*alarms[:keep], t("dash.more_alarms", lang, count=len(alarms) - keep)]
    room -= len(alarms)
    devices = _devices(snap, width, lang)
    if len(devices) > room:
        keep = max(0, room - 1)
        devices = [*devices[:keep], t("dash.more_devices", lang, count=len(devices) - keep)]
    title = f"[bold]{escape(t('dash.devices', lang))}[/]"
    out = [*head, *alarms, title, *devices, *buses, *foot]
    return [_fit(line, width) for line in out[:height]]


def _fit(markup: str, width: int) -> str:
    text = Text.from_markup(markup)
    if text.cell_len <= width:
        return markup
    text.truncate(width - 1)
    text.append("…")
    return text.markup


def _header(snap: dict[str, Any], lang: str | None) -> list[str]:
    broker = snap["broker"]
    link = (f"[green]{t('dash.connected', lang)}[/]" if broker["connected"] else
            f"[bold red]{t('dash.disconnected', lang)}[/]")
    outbox = snap["outbox"]
    oldest = age(outbox["oldest_age"], lang) if outbox["depth"] else "—"
    clock = ("" if snap.get("clock_synced", True) else
             f"  [yellow]{t('dash.clock_unsynced', lang)}[/]")
    return [
        f"[bold reverse] batigate [/] [bold]{escape(snap['gw'])}[/] · {escape(snap['site'])} · "
        f"{t('dash.uptime', lang, age=age(snap.get('uptime'), lang))}{clock}",
        f"{t('dash.broker', lang)} {escape(broker['host'])}:{broker['port']} {link}   "
        f"{t('dash.outbox', lang, depth=outbox['depth'], oldest=oldest)}"
        + (f" [red]{t('dash.dropped', lang, count=outbox['dropped'])}[/]"
           if outbox.get("dropped") else ""),
    ]


@dataclass(frozen=True)
class AlarmText:
    """What the console dashboard and the local web page both say about one active alarm."""

    severity: str  # as the rule gave it (a style or CSS class picks on it)
    shown: str  # the severity in the operator's language
    where: str  # device/point
    value: str | None  # the value that raised it, with its unit; None when the alarm has none
    ago: str  # since when, short ("?" when the alarm carries no time)


def alarm_text(alarm: dict[str, Any], now: float, lang: str | None) -> AlarmText:
    severity = str(alarm.get("severity", ""))
    shown = t("severity." + severity, lang) if severity in SEVERITY_ORDER else severity
    where = "/".join(str(alarm[k]) for k in ("device", "point") if alarm.get(k))
    value = None
    if alarm.get("value") is not None:
        value = value_text({"v": alarm["value"], "u": alarm.get("unit")}, lang)
    since = alarm.get("raised_at") or alarm.get("since")
    ago = age(now - since, lang) if isinstance(since, int | float) else "?"
    return AlarmText(severity, shown, where, value, ago)


def _alarms(snap: dict[str, Any], now: float, lang: str | None) -> list[str]:
    alarms = sorted(snap.get("alarms") or [], key=_alarm_rank)
    if not alarms:
        return [f"[green]{t('dash.no_alarm', lang)}[/]"]
    out = [f"[bold red]{t('dash.alarms', lang, count=len(alarms))}[/]"]
    for alarm in alarms:
        said = alarm_text(alarm, now, lang)
        style = SEVERITY_STYLE.get(said.severity, "red")
        value = "" if said.value is None else " " + said.value
        acked = f" [dim]{t('dash.acked', lang)}[/]" if alarm.get("acked") else ""
        out.append(f"[{style}]{escape(said.shown):<9}[/]"
                   f" {escape(str(alarm.get('alarm', '?')))} {escape(said.where)}{escape(value)} "
                   f"[dim]{t('dash.since', lang, age=said.ago)}[/]{acked}")
    return out


def _alarm_rank(alarm: dict[str, Any]) -> tuple[int, float]:
    severity = alarm.get("severity")
    rank = SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else len(SEVERITY_ORDER)
    return rank, -(alarm.get("raised_at") or alarm.get("since") or 0)


def _devices(snap: dict[str, Any], width: int, lang: str | None) -> list[str]:
    out = []
    name_width = min(14, max((len(d["id"]) for d in snap["devices"]), default=4))
    for device in snap["devices"]:
        state = str(device["state"])
        style = STATE_STYLE.get(state, "yellow")
        shown_state = t("state." + state, lang) if state in ("ok", "down", "unknown") else state
        prefix = (f"{escape(device['id'][:name_width]):<{name_width}} "
                  f"[{style}]{escape(shown_state):<7}[/] ")
        room = width - name_width - 9
        values: list[str] = []
        used = 0
        for point in device.get("points", []):
            item = f"{point['n']} {value_text(point, lang)}"
            if point.get("q") == "bad":
                item += " ✗"
            if used + len(item) + 2 > room:
                break
            values.append(item)
            used += len(item) + 2
        if state == "down" and device.get("last_error"):
            values = [str(device["last_error"])]
        out.append(prefix + escape("  ".join(values)))
    return out


def _buses(snap: dict[str, Any], lang: str | None) -> list[str]:
    parts = [t("dash.bus", lang, bus=bus_id, requests=c.get("requests", 0),
               timeouts=c.get("timeouts", 0), errors=c.get("exceptions", 0) + c.get("garbage", 0))
             for bus_id, c in (snap.get("buses") or {}).items()]
    return [f"[dim]{escape('  ·  '.join(parts))}[/]"] if parts else []


# -- live and plain output -----------------------------------------------------------------------

Fetch = Callable[[], Awaitable[dict[str, Any] | None]]


async def show_live(fetch: Fetch, stop: asyncio.Event, *, console: Console,
                    refresh: float = 1.0, lang: str | None = None,
                    note: str | None = None) -> None:
    """Redraw the dashboard every `refresh` seconds until `stop` is set (full screen on a
    terminal: the screen is restored at the end)."""
    def screen(snap: dict[str, Any] | None) -> Group:
        size = console.size
        if snap is None:
            return Group(Text(t("dash.waiting", lang)))
        return Group(*(_line(markup) for markup in lines(snap, size.width, size.height, lang,
                                                         note)))

    with Live(screen(None), console=console, screen=True, auto_refresh=False,
              transient=True) as live:
        while not stop.is_set():
            live.update(screen(await fetch()), refresh=True)
            try:
                async with asyncio.timeout(refresh):
                    await stop.wait()
            except TimeoutError:
                pass


def _line(markup: str) -> Text:
    text = Text.from_markup(markup, overflow="crop")
    text.no_wrap = True
    return text


class PlainReport:
    """Off a terminal: one line per change, so a pipe or a log file reads like a journal."""

    def __init__(self, emit: Callable[[str], None], lang: str | None = None) -> None:
        self.emit = emit
        self.lang = lang
        self._states: dict[str, str] = {}
        self._alarms: set[str] = set()
        self._connected: bool | None = None

    def update(self, snap: dict[str, Any]) -> None:
        lang = self.lang
        stamp = time.strftime("%H:%M:%S", time.localtime(snap.get("ts") or time.time()))
        connected = bool(snap["broker"]["connected"])
        if connected != self._connected:
            self._connected = connected
            key = "dash.connected" if connected else "dash.disconnected"
            self.emit(f"{stamp} {t('dash.broker', lang)} {t(key, lang)}")
        for device in snap["devices"]:
            state = str(device["state"])
            if self._states.get(device["id"]) != state:
                self._states[device["id"]] = state
                values = ", ".join(f"{p['n']}={value_text(p, lang)}"
                                   for p in device.get("points", []) if p.get("v") is not None)
                self.emit(f"{stamp} {device['id']} {state}" + (f": {values}" if values else ""))
        active = {str(a.get("alarm")): a for a in snap.get("alarms") or []}
        for alarm_id in sorted(active.keys() - self._alarms):
            alarm = active[alarm_id]
            value = (" " + value_text({"v": alarm["value"], "u": alarm.get("unit")}, lang)
                     if alarm.get("value") is not None else "")
            self.emit(f"{stamp} {t('dash.raised', lang)} {alarm.get('severity')} {alarm_id}"
                      f"{value}: {alarm.get('message', '')}")
        for alarm_id in sorted(self._alarms - active.keys()):
            self.emit(f"{stamp} {t('dash.cleared', lang)} {alarm_id}")
        self._alarms = set(active)


async def show_plain(fetch: Fetch, stop: asyncio.Event, emit: Callable[[str], None], *,
                     refresh: float = 1.0, lang: str | None = None) -> None:
    report = PlainReport(emit, lang)
    while not stop.is_set():
        snap = await fetch()
        if snap is not None:
            report.update(snap)
        try:
            async with asyncio.timeout(refresh):
                await stop.wait()
        except TimeoutError:
            pass
