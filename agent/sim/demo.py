"""`batigate demo`: the simulated building, a local broker and the agent, in one process.

The broker is the system mosquitto when there is one, otherwise amqtt embedded in this process
(MQTT 3.1.1 only, so the demo config then selects 3.1.1). Nothing needs root, nothing listens
beyond 127.0.0.1, and everything is under a temporary folder removed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import tempfile
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from rich.console import Console

from agent.config import loader as config_mod
from agent.runtime import logs
from agent.uplink import senml
from agent.runtime import supervisor
from agent.i18n import t
from agent.local import page_url
from agent.uplink.session import watch

console = Console()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def demo_config(workdir: Path, building: Any, broker_port: int, protocol: str) -> dict[str, Any]:
    """The gateway config of the simulated building: devices by profile, as on a real site, with
    the profiles' default alarm rules shortened so that the demo's faults show within a minute."""
    sections = building.gateway_sections(poll="2s", meter_poll="10s",
                                         keys=workdir / "wmbus.keys")
    for device in sections["devices"]:
        if device["profile"] == "vmc-caisson":
            device["rules"] = {"low-depression": {"for": "5s"}, "pressure-switch": {"for": "5s"}}
        if device["id"] == "flat-103-water":  # the leaking flat: its leak shows without a night
            device["rules"] = {"night-leak": {"for": "40s"}}
    return {
        "gateway": {"id": "gw-demo", "site": "res-les-pins"},
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "tls": False, "protocol": protocol},
        "buffer": {"path": str(workdir / "outbox.db"), "commit_interval": "500ms"},
        "control": {"socket": str(workdir / "control.sock")},
        "health": {"interval": "30s"},
        # A lab on a laptop: anyone on the local broker may send any command, and the agent
        # says so at start (the secure default, without a key, refuses state changes).
        "commands": {"unsigned": "allow"},
        # The local status page, as a technician would open it on site (token in workdir).
        "local": {"listen": f"127.0.0.1:{_free_port()}", "token_file": str(workdir / "token"),
                  "bucket": "10s"},
        **sections,
    }


@contextlib.asynccontextmanager
async def local_broker(workdir: Path) -> AsyncIterator[tuple[int, str]]:
    """Yield (port, MQTT protocol) of a broker on 127.0.0.1."""
    port = _free_port()
    binary = shutil.which("mosquitto") or shutil.which("/usr/sbin/mosquitto")
    if binary:
        conf = workdir / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        # Its own session: Ctrl-C signals the terminal's whole process group, and the broker must
        # outlive the agent's clean stop (drain, offline state); it is stopped last, below.
        proc = await asyncio.create_subprocess_exec(binary, "-c", str(conf),
                                                    stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.DEVNULL,
                                                    start_new_session=True)
        try:
            await _wait_port(port)
            console.print(f"[dim]{t('demo.broker', broker=binary, port=port, mqtt='5')}[/]")
            yield port, "5"
        finally:
            proc.terminate()
            await proc.wait()
        return
    from amqtt.broker import Broker  # noqa: PLC0415 - only when no mosquitto is installed

    broker = Broker({"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}}})
    await broker.start()
    try:
        console.print(f"[dim]{t('demo.broker_embedded', port=port)}[/]")
        yield port, "3.1.1"
    finally:
        await broker.shutdown()


async def _wait_port(port: int) -> None:
    async with asyncio.timeout(10):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return


def _short(value: object) -> object:
    """Four significant digits are plenty on a terminal (the message itself keeps them all)."""
    return float(f"{value:.4g}") if isinstance(value, float) else value


def _show(topic: str, payload: bytes, retained: bool) -> None:
    try:
        body = senml.decode(payload, "json")
    except ValueError:
        console.print(f"[red]{topic}[/] {t('demo.undecodable', size=len(payload))}")
        return
    short = topic.split("/", 3)[-1]
    flag = " [dim](retained)[/]" if retained else ""
    if "e" in body:
        values = ", ".join(
            f"{r['n']}={_short(r.get('v', r.get('vb', r.get('vs', '?'))))}"
            f"{' ' + r['u'] if 'u' in r else ''}"
            + (f" [{r['q']}]" if "q" in r else "") for r in body["e"])
        values += "".join(f", {b['n']}=— [bad]" for b in body.get("bad", []))
        hist = " [yellow]hist[/]" if body.get("hist") else ""
        console.print(f"[cyan]{short}[/] seq={body.get('seq')}{hist}: {values}")
    elif str(body.get("type", "")).startswith("alarm."):
        colour = "red" if body["type"] == "alarm.raised" else "green"
        console.print(f"[bold {colour}]{short} {body['type']}[/] {body.get('alarm')}: "
                      f"{body.get('message', '')}")
    else:
        hidden = ("v", "gw", "mid", "devices", "sess", "ts", "hist", "commands", "rules")
        fields = {k: v for k, v in body.items() if k not in hidden}
        console.print(f"[magenta]{short}[/]{flag}: {fields}")


def last_month(now: float, zone: str) -> str:
    """The month before the one `now` is in, in the site's zone: `2026-11` on 6 December."""
    first = datetime.fromtimestamp(now, ZoneInfo(zone)).date().replace(day=1)
    return (first - timedelta(days=1)).strftime("%Y-%m")


async def run(seconds: float = 0, scenario: str | None = "vmc-depression-loss", *,
              log: bool = False, speed: float = 1.0, keep: Path | None = None) -> int:
    """The dashboard on a terminal; the raw message stream with `log` or off a terminal.

    With `keep`, the config and the outbox stay in that folder after the demo, so that `batigate
    meters export --config KEEP/gateway.yaml --month M` bills from what the gateway kept."""
    from agent.sim.building import SITE_TZ, Building  # noqa: PLC0415

    logs.setup("warning")
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        if any(keep.iterdir()):
            console.print(f"[red]{t('demo.keep_not_empty', path=keep)}[/]")
            return 2
    workdir = keep if keep is not None else Path(tempfile.mkdtemp(prefix="batigate-demo-"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    building = Building(radio_interval=8.0)  # radio meters send every 8 s (T1 meters can)
    modbus_port, mbus_port = await building.start()
    building_line = t("demo.building", modbus=modbus_port, mbus=mbus_port,
                      radio=building.radio_ports["im871a"])
    console.print(f"[dim]{building_line}[/]")
    try:
        async with local_broker(workdir) as (broker_port, protocol):
            path = workdir / "gateway.yaml"
            path.write_text(yaml.safe_dump(demo_config(workdir, building, broker_port,
                                                       protocol), sort_keys=False))
            config = config_mod.load(path)  # the same checks a technician's file gets
            console.print(f"[dim]{t('demo.config', path=path, root=config.root)}[/]")
            page = page_url(config)
            if page:
                console.print(f"[dim]{t('demo.page', url=page)}[/]")
            dashboard = console.is_terminal and not log
            agents: list[Any] = []

            async def viewer() -> None:
                if dashboard:
                    await _dashboard(agents, stop, page)
                    return
                async for topic, payload, retained in watch("127.0.0.1", broker_port,
                                                            f"{config.root}/#", protocol=protocol):
                    _show(topic, payload, retained)

            async def timer() -> None:
                if seconds > 0:
                    await asyncio.sleep(seconds)
                    stop.set()

            async def faults() -> None:
                if scenario:
                    starts = t("demo.scenario", name=scenario, s=f"{10 / speed:g}")
                    console.print(f"[dim]{starts}[/]")
                    await asyncio.sleep(10 / speed)
                    await building.play(scenario, speed)

            async with asyncio.TaskGroup() as tg:
                view = tg.create_task(viewer())
                tg.create_task(timer())
                play = tg.create_task(faults())
                await supervisor.serve(config, shutdown_trigger=stop.wait, ready=agents.append)
                view.cancel()
                play.cancel()
    finally:
        await building.stop()
        if keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    console.print(f"[dim]{t('demo.stopped')}[/]")
    if keep is not None:
        month = last_month(building.clock(), SITE_TZ)
        console.print(t("demo.kept", path=workdir, config=workdir / "gateway.yaml", month=month),
                      soft_wrap=True, markup=False)
    return 0


async def _dashboard(agents: list[Any], stop: asyncio.Event, page: str | None) -> None:
    """The live building dashboard of the in-process agent (agent.display.dashboard)."""
    from agent.display.dashboard import show_live  # noqa: PLC0415
    from agent.display.snapshot import snapshot  # noqa: PLC0415

    async def fetch() -> dict[str, Any] | None:
        return snapshot(agents[0]) if agents else None

    await show_live(fetch, stop, console=console, note=page)
