"""The routes of the local page and read API, on top of `agent.display.snapshot`.

Every route but the OpenAPI document needs the token: `Authorization: Bearer TOKEN` (services),
or `?token=TOKEN` / the `batigate_token` cookie it sets (a browser on site). Values are SenML
(`v`, `u`, as on MQTT) plus `display`, the same value in human units for people.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from agent.display.dashboard import value_text
from agent.i18n import LANGUAGES, parse
from agent.local import openapi, page
from agent.local.history import History
from agent.local.http import HttpError, Request, Response

API = "/api/v1"
_POINT = re.compile(rf"^{API}/points/([a-z0-9][a-z0-9-]*)/([a-z0-9_]+)$")
COOKIE = "batigate_token"


class Api:
    def __init__(self, snapshot: Callable[[], dict[str, Any]], history: History, token: str,
                 default_lang: str) -> None:
        self.snapshot = snapshot
        self.history = history
        self.token = token
        self.default_lang = default_lang

    async def __call__(self, request: Request) -> Response:
        path = request.path.rstrip("/") or "/"
        if path in (f"{API}/openapi.json", "/openapi.json"):
            return _json(openapi.document())
        via_query = self._authorize(request)
        lang = self._language(request)
        snap = self.snapshot()
        if path == "/":
            if via_query:
                # The browser keeps the token in a cookie and reloads without it, so the token
                # stays out of the address bar, the history and any screenshot of the page.
                rest = urlencode({k: v for k, v in request.query.items() if k != "token"})
                return Response(303, b"", "text/plain", {
                    "Location": "/" + (f"?{rest}" if rest else ""),
                    "Set-Cookie": f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"})
            return Response(200, page.render(snap, self.history, lang).encode(),
                            "text/html; charset=utf-8")
        if path == f"{API}/points":
            return _json({"ts": snap["ts"], "points": [
                self._point(d["id"], p, lang) for d in snap["devices"] for p in d["points"]]})
        if match := _POINT.match(path):
            return _json(self._one_point(snap, match.group(1), match.group(2), lang))
        if path == f"{API}/devices":
            return _json({"ts": snap["ts"], "devices": [
                {k: v for k, v in d.items() if k != "points"} for d in snap["devices"]]})
        if path == f"{API}/alarms":
            return _json({"ts": snap["ts"], "alarms": snap["alarms"]})
        if path == f"{API}/health":
            keys = ("gw", "site", "sess", "uptime", "broker", "outbox", "clock_synced", "cert",
                    "buses", "ts")
            return _json({k: snap[k] for k in keys})
        known = ", ".join(["/", *openapi.PATHS])
        raise HttpError(404, f"no such resource {request.path[:80]!r}; known: {known}")

    def _authorize(self, request: Request) -> bool:
        """True when the token came in the query (the page then sets the cookie)."""
        offered = []
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            offered.append((auth[7:].strip(), False))
        if "token" in request.query:
            offered.append((request.query["token"], True))
        for part in request.headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE:
                offered.append((value, False))
        for candidate, via_query in offered:
            if hmac.compare_digest(candidate.encode(), self.token.encode()):
                return via_query
        why = "wrong token" if offered else "a token is needed"
        raise HttpError(401, f"{why}: send `Authorization: Bearer TOKEN` (the token is in the "
                             "file local.token_file on the gateway)",
                        {"WWW-Authenticate": 'Bearer realm="batigate"'})

    def _language(self, request: Request) -> str:
        if "lang" in request.query:
            if request.query["lang"] not in LANGUAGES:
                raise HttpError(400, f"lang must be one of {', '.join(LANGUAGES)}")
            return request.query["lang"]
        accepted = request.headers.get("accept-language", "")
        for item in accepted.split(","):
            code = item.split(";")[0].strip()
            if code and parse(code) != "en" or code.lower().startswith("en"):
                return parse(code)
        return self.default_lang

    def _point(self, dev: str, point: dict[str, Any], lang: str) -> dict[str, Any]:
        return {"dev": dev, **point, "display": value_text(point, lang)}

    def _one_point(self, snap: dict[str, Any], dev: str, name: str, lang: str) -> dict[str, Any]:
        device = next((d for d in snap["devices"] if d["id"] == dev), None)
        if device is None:
            raise HttpError(404, f"unknown device {dev!r}")
        point = next((p for p in device["points"] if p["n"] == name), None)
        if point is None:
            raise HttpError(404, f"{dev} has no point {name!r}")
        series = self.history.series(dev, name, snap["ts"])
        return {**self._point(dev, point, lang), "bucket": self.history.bucket,
                "history": [[round(start, 3), mean] for start, mean in series]}


def _json(doc: Any) -> Response:
    return Response(200, json.dumps(doc, default=str).encode())
