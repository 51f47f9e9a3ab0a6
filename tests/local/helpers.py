"""The simulated building read by a real agent with its local page on; an alarm raised at once."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config import loader as config_mod
from agent.sim.building import Building
from tests.broker import free_port
from tests.cli.helpers import write_config
from tests.integration.helpers import running_agent


@dataclass
class Site:
    agent: Any
    url: str
    token: str
    token_file: Path


@contextlib.asynccontextmanager
async def site(tmp_path: Path, **local: Any) -> AsyncIterator[Site]:
    building = Building()
    await building.start(0, 0)
    try:
        sections = building.gateway_sections(poll="300ms", meter_poll="1s")
        for device in sections["devices"]:
            if device["id"] == "vmc":  # ~120 Pa is "below 500": the alarm raises after 1 s
                device["rules"] = {"low-depression": {"below": 500, "for": "1s",
                                                      "clear_above": 600}}
        port = free_port()
        token_file = tmp_path / "state" / "local.token"
        path = write_config(tmp_path, **sections, local={
            "listen": f"127.0.0.1:{port}", "token_file": str(token_file), "bucket": "1s",
            **local})
        config = config_mod.load(path)
        async with running_agent(config) as agent:
            async with asyncio.timeout(15):
                while not (agent.engine.active() and all(
                        agent.pipeline.latest[d] for d in ("vmc", "meter-1", "heat-10"))):
                    await asyncio.sleep(0.1)
            token = token_file.read_text().strip()
            yield Site(agent, f"http://127.0.0.1:{port}", token, token_file)
    finally:
        await building.stop()


async def curl(url: str, *args: str, token: str | None = None) -> tuple[int, dict[str, str], str]:
    """(status, headers, body) from curl, an HTTP client we did not write."""
    auth = ["-H", f"Authorization: Bearer {token}"] if token else []
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", "-D", "-", "--max-time", "10", *auth, *args, url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    head, _, body = out.decode().partition("\r\n\r\n")
    status_line, *lines = head.split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def error_of(body: str) -> str:
    return str(json.loads(body)["error"]["message"])
