"""The local read API through curl: every point with units, devices, alarms, health, OpenAPI;
the token; clear errors; and the bounds against slow, greedy and many clients."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

import pytest

from agent.local import token as token_mod
from tests.local.helpers import curl, error_of, site


async def test_every_point_with_units_and_the_other_endpoints(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        status, _, body = await curl(f"{s.url}/api/v1/points", "-H",
                                     "Accept-Language: en-GB,fr;q=0.5", token=s.token)
        assert status == 200, body
        points = {(p["dev"], p["n"]): p for p in json.loads(body)["points"]}
        configured = {(d.id, p.name) for d in s.agent.config.devices for p in d.points}
        assert configured <= set(points)  # every configured point, read yet or not
        vmc = points[("vmc", "exhaust_pressure")]
        assert vmc["u"] == "Pa" and isinstance(vmc["v"], float) and vmc["q"] == "good"
        assert vmc["display"].endswith(" Pa")
        heat = points[("heat-10", "energy")]
        assert heat["u"] == "J" and heat["display"].endswith(" kWh")  # SenML on the wire, kWh read
        assert heat["display"] == "18,450 kWh"
        _, _, french = await curl(f"{s.url}/api/v1/points?lang=fr", token=s.token)
        assert {(p["dev"], p["n"]): p for p in json.loads(french)["points"]}[
            ("heat-10", "energy")]["display"] == "18 450 kWh"

        status, _, body = await curl(f"{s.url}/api/v1/devices", token=s.token)
        devices = {d["id"]: d for d in json.loads(body)["devices"]}
        assert status == 200 and devices["vmc"]["state"] == "ok" and "polls" in devices["vmc"]
        status, _, body = await curl(f"{s.url}/api/v1/alarms", token=s.token)
        alarms = json.loads(body)["alarms"]
        assert status == 200 and [a["alarm"] for a in alarms] == ["vmc-low-depression"]
        status, _, body = await curl(f"{s.url}/api/v1/health", token=s.token)
        health = json.loads(body)
        assert status == 200 and {"broker", "outbox", "buses", "clock_synced"} <= set(health)
        assert health["buses"]["lan"]["requests"] > 0

        await asyncio.sleep(2.5)  # a few one-second buckets of history
        status, _, body = await curl(f"{s.url}/api/v1/points/vmc/exhaust_pressure",
                                     token=s.token)
        one = json.loads(body)
        assert status == 200 and one["bucket"] == 1.0 and len(one["history"]) >= 2
        assert all(50 < mean < 200 for _, mean in one["history"])

        status, _, body = await curl(f"{s.url}/api/v1/openapi.json")  # documentation: no token
        doc = json.loads(body)
        assert status == 200 and doc["openapi"].startswith("3.1")
        for path in ("/api/v1/points", "/api/v1/devices", "/api/v1/alarms", "/api/v1/health"):
            assert "200" in doc["paths"][path]["get"]["responses"]


async def test_token_and_clear_errors(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        assert stat.S_IMODE(os.stat(s.token_file).st_mode) == 0o600
        status, headers, body = await curl(f"{s.url}/api/v1/points")
        assert status == 401 and "Bearer" in headers["www-authenticate"]
        assert "a token is needed" in error_of(body)
        status, _, body = await curl(f"{s.url}/api/v1/points", token="x" * 32)
        assert status == 401 and "wrong token" in error_of(body)
        status, _, body = await curl(f"{s.url}/api/v1/nothing", token=s.token)
        assert status == 404 and "/api/v1/points" in error_of(body)
        status, _, body = await curl(f"{s.url}/api/v1/points/vmc/nope", token=s.token)
        assert status == 404 and "vmc has no point 'nope'" in error_of(body)
        status, headers, body = await curl(f"{s.url}/api/v1/points", "-X", "POST",
                                           token=s.token)
        assert status == 405 and headers["allow"] == "GET, HEAD" and "read-only" in error_of(body)
        status, _, body = await curl(f"{s.url}/api/v1/points", "-X", "GET", "--data", "x=1",
                                     token=s.token)
        assert status == 413 and "read-only" in error_of(body)
        status, _, body = await curl(f"{s.url}/api/v1/points", "-H", "X-Big: " + "a" * 9000,
                                     token=s.token)
        assert status == 431
        status, _, body = await curl(f"{s.url}/api/v1/points?lang=de", token=s.token)
        assert status == 400 and "lang" in error_of(body)
        status, headers, _ = await curl(f"{s.url}/api/v1/points", "-I", token=s.token)
        assert status == 200 and int(headers["content-length"]) > 100
        # A browser: the token in the address once, then a cookie and an address without it.
        status, headers, _ = await curl(f"{s.url}/?token={s.token}&lang=fr")
        assert status == 303 and headers["location"] == "/?lang=fr"
        cookie = headers["set-cookie"].split(";")[0]
        assert "HttpOnly" in headers["set-cookie"] and "SameSite=Strict" in headers["set-cookie"]
        status, headers, body = await curl(f"{s.url}/?lang=fr", "-H", f"Cookie: {cookie}")
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert "Équipements" in body and s.token not in body


async def test_slow_and_many_clients_are_bounded(tmp_path: Path) -> None:
    async with site(tmp_path, max_clients=3, idle_timeout="1s") as s:
        port = int(s.url.rsplit(":", 1)[1])
        # Slow clients: they send half a request and nothing more; they hold the 3 places...
        slow = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        for _, writer in slow:
            writer.write(b"GET /api/v1/points HTTP/1.1\r\n")
        await asyncio.sleep(0.2)
        # ...so a fourth is told at once to come back later, rather than queued forever,
        status, headers, body = await curl(f"{s.url}/api/v1/points", token=s.token)
        assert status == 503 and headers["retry-after"] == "5"
        # ...and each slow one gets a 408 within the idle timeout, which frees the places.
        for reader, writer in slow:
            async with asyncio.timeout(3):
                answer = await reader.read()
            assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
            writer.close()
        status, _, _ = await curl(f"{s.url}/api/v1/points", token=s.token)
        assert status == 200
        server = s.agent.local_server
        assert server.counters.refused_busy == 1 and server.counters.timeouts == 3
        assert server.active == 0
        # Garbage is a 400, not a crash.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x00\xff garbage\r\n\r\n")
        async with asyncio.timeout(3):
            assert (await reader.read()).startswith(b"HTTP/1.1 400")
        writer.close()


def test_token_file_is_created_0600_and_a_readable_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "local.token"
    token = token_mod.load_or_create(path)
    assert len(token) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert token_mod.load_or_create(path) == token  # kept across restarts
    path.chmod(0o644)
    with pytest.raises(token_mod.TokenFileError, match="chmod 600"):
        token_mod.load_or_create(path)
