"""The status page: the terminal dashboard's content as one self-contained HTML page.

No script, no external resource (the gateway may have no internet, and a page without script
cannot be turned against its reader); it reloads itself every 10 s. Each point has a 24-hour
sparkline drawn as inline SVG from the history ring.
"""

from __future__ import annotations

import time
from html import escape
from typing import Any

from agent.display.dashboard import alarm_text, value_text
from agent.display.units import age
from agent.i18n import t
from agent.local.history import History

ALARM_RED = "#c62828"  # the alarm banner's colour (tests look for it in a screenshot)
_STYLE = f"""
body {{ font-family: sans-serif; margin: 1em; color: #222; background: #fff; }}
h1 {{ font-size: 1.3em; margin: 0 0 .3em; }}
.meta {{ color: #555; margin-bottom: .8em; }}
.ok {{ color: #2e7d32; font-weight: bold; }} .bad {{ color: {ALARM_RED}; font-weight: bold; }}
#alarms .alarm {{ background: {ALARM_RED}; color: #fff; padding: .4em .6em; margin: .2em 0; }}
#alarms .alarm.minor, #alarms .alarm.warning, #alarms .alarm.info {{ background: #f9a825;
  color: #000; }}
#alarms .none {{ color: #2e7d32; }}
table {{ border-collapse: collapse; margin-top: .6em; }}
td, th {{ border-bottom: 1px solid #ddd; padding: .2em .6em; text-align: left; }}
td.v {{ text-align: right; font-variant-numeric: tabular-nums; }}
svg.spark {{ vertical-align: middle; }}
"""


def render(snap: dict[str, Any], history: History, lang: str) -> str:
    now = snap.get("ts") or time.time()
    broker = snap["broker"]
    link = (f'<span class="ok">{t("dash.connected", lang)}</span>' if broker["connected"] else
            f'<span class="bad">{t("dash.disconnected", lang)}</span>')
    outbox = snap["outbox"]
    oldest = age(outbox["oldest_age"], lang) if outbox["depth"] else "—"
    parts = [
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="10">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>batigate {escape(snap["gw"])}</title><style>{_STYLE}</style></head><body>',
        f'<h1>{escape(snap["gw"])} · {escape(snap["site"])}</h1>',
        f'<div class="meta" id="health">{t("dash.broker", lang)} {escape(broker["host"])}:'
        f'{broker["port"]} {link} · '
        f'{escape(t("dash.outbox", lang, depth=outbox["depth"], oldest=oldest))} · '
        f'{escape(t("dash.uptime", lang, age=age(snap.get("uptime"), lang)))}</div>',
        _alarms(snap, now, lang),
        _devices(snap, history, now, lang),
        "</body></html>",
    ]
    return "\n".join(parts)


def _alarms(snap: dict[str, Any], now: float, lang: str) -> str:
    alarms = snap.get("alarms") or []
    if not alarms:
        return f'<section id="alarms"><p class="none">{t("dash.no_alarm", lang)}</p></section>'
    rows = []
    for alarm in alarms:
        said = alarm_text(alarm, now, lang)
        value = "" if said.value is None else " · " + said.value
        rows.append(f'<div class="alarm {escape(said.severity)}" data-alarm="'
                    f'{escape(str(alarm.get("alarm")))}"><b>{escape(said.shown)}</b> '
                    f'{escape(str(alarm.get("alarm")))} — {escape(said.where)}{escape(value)} · '
                    f'{escape(t("dash.since", lang, age=said.ago))}'
                    f'<br>{escape(str(alarm.get("message", "")))}</div>')
    title = escape(t("dash.alarms", lang, count=len(alarms)))
    return f'<section id="alarms"><h2>{title}</h2>{"".join(rows)}</section>'


def _devices(snap: dict[str, Any], history: History, now: float, lang: str) -> str:
    rows = []
    for device in snap["devices"]:
        state = str(device["state"])
        css = "ok" if state == "ok" else "bad"
        shown = t("state." + state, lang) if state in ("ok", "down", "unknown") else state
        points = device.get("points") or [{"n": "", "v": None, "u": None}]
        for index, point in enumerate(points):
            head = (f'<td rowspan="{len(points)}"><b>{escape(device["id"])}</b></td>'
                    f'<td rowspan="{len(points)}" class="{css}">{escape(shown)}</td>'
                    if index == 0 else "")
            spark = sparkline(history.series(device["id"], point["n"], now)) if point["n"] else ""
            rows.append(f'<tr data-device="{escape(device["id"])}">{head}'
                        f'<td>{escape(point["n"])}</td>'
                        f'<td class="v">{escape(value_text(point, lang))}</td>'
                        f"<td>{spark}</td></tr>")
    title = escape(t("dash.devices", lang))
    return (f'<section id="devices"><h2>{title}</h2><table>{"".join(rows)}</table></section>')


def sparkline(series: list[tuple[float, float]], width: int = 120, height: int = 24) -> str:
    """An inline SVG polyline of the series (empty with fewer than two values)."""
    if len(series) < 2:
        return ""
    values = [v for _, v in series]
    low, high = min(values), max(values)
    if high == low:  # a flat day is drawn through the middle
        low, high = low - 1.0, high + 1.0
    span = high - low
    step = width / (len(values) - 1)
    coords = " ".join(f"{i * step:.1f},{height - 2 - (v - low) / span * (height - 4):.1f}"
                      for i, v in enumerate(values))
    return (f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} '
            f'{height}"><polyline fill="none" stroke="#1565c0" stroke-width="1.5" '
            f'points="{coords}"/></svg>')
