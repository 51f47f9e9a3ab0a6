"""Boot the image's root file system (amd64 variant, same recipe as the Pi image) under
systemd-nspawn: first boot installs the dropped gateway.yaml, the hardened service reaches
running, feeds the watchdog, and publishes to a mosquitto on the host."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiomqtt
import pytest

from tests.broker import Mosquitto
from tests.images import harness

pytestmark = pytest.mark.timeout(900)  # a cold rootfs build is ~1 min, a boot ~10 s


@pytest.fixture(scope="module")
def root() -> Path:
    harness.require_tools()
    return harness.rootfs("nspawn", "x86_64")


def prepare(tmp_path: Path, gateway_yaml: str, *, wait: float) -> dict[str, Path]:
    drop, results, dropin = tmp_path / "fat", tmp_path / "results", tmp_path / "dropin"
    for folder in (drop, results, dropin):
        folder.mkdir()
    (drop / "gateway.yaml").write_text(gateway_yaml)
    (results / "probe.sh").write_text(harness.PROBE_SCRIPT.format(wait=wait))
    (tmp_path / "probe.service").write_text(harness.PROBE_UNIT)
    # A short watchdog so that a few seconds show several pings (and that missing ones would kill).
    (dropin / "test.conf").write_text("[Service]\nWatchdogSec=4s\n")
    return {"drop": drop, "results": results, "dropin": dropin,
            "unit": tmp_path / "probe.service"}


async def boot(root: Path, paths: dict[str, Path]) -> harness.Boot:
    return await harness.boot(
        root, binds={paths["drop"]: "/boot/firmware", paths["results"]: "/results"},
        ro_binds={paths["unit"]: "/etc/systemd/system/batigate-probe.service",
                  paths["dropin"]: "/etc/systemd/system/batigate.service.d"},
        wants=["batigate-probe.service"])


async def test_service_runs_feeds_the_watchdog_and_publishes(
        root: Path, tmp_path: Path, broker: Mosquitto) -> None:
    paths = prepare(tmp_path, "gateway: {id: gw-nspawn, site: ci}\n"
                    f"mqtt: {{host: 127.0.0.1, port: {broker.port}, tls: false}}\n"
                    "health: {interval: 2s}\n", wait=9)
    seen: dict[str, list[dict[str, object]]] = {}

    async def collect() -> None:
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            await client.subscribe("bgw/v1/ci/gw-nspawn/#")
            async for message in client.messages:
                kind = str(message.topic).rsplit("/", 1)[-1]
                seen.setdefault(kind, []).append(json.loads(message.payload))

    listener = asyncio.create_task(collect())
    await asyncio.sleep(0.3)
    try:
        result = await boot(root, paths)
    finally:
        listener.cancel()
    probe = harness.parse_probe((paths["results"] / "probe.txt").read_text())
    assert result.returncode == 0, result.console[-3000:]
    assert probe["firstboot"] == "success"
    assert "installed /etc/batigate/gateway.yaml" in result.console  # on the console too
    assert (probe["ActiveState"], probe["SubState"], probe["NRestarts"]) == \
        ("active", "running", "0"), probe
    assert probe["StatusText"].startswith("running:")  # sent with READY=1
    assert probe["WatchdogUSec"] == "4s"
    # several WATCHDOG=1 in 9 s (every 2 s), and NRestarts=0: a missed one would have killed it
    assert int(probe["wd_last"]) - int(probe["wd_first"]) >= 4_000_000, probe
    assert probe["agent_user"] == "batigate"
    assert probe["failed_units"].strip() == ""
    assert probe["mount"].startswith("/var/lib/batigate")  # the data partition's bind mount
    assert probe["etc"].split() == ["gateway.yaml"]
    assert not (paths["drop"] / "gateway.yaml").exists()  # moved off the FAT
    # online, then offline when the container's shutdown stopped the agent with SIGTERM
    assert [state["online"] for state in seen["state"]] == [True, False]
    assert seen["birth"][0]["gw"] == "gw-nspawn"
    # periodic health (every 2 s): its system figures got through the unit's seccomp filter
    assert len(seen["health"]) >= 3 and "clock_synced" in seen["health"][-1]
    assert "Traceback" not in (paths["results"] / "agent.journal").read_text()


async def test_invalid_drop_is_reported_on_console_and_journal(root: Path, tmp_path: Path) -> None:
    paths = prepare(tmp_path, "gateway: {id: GW 42, site: ci}\nmqtt: {host: h, port: 0}\n", wait=0)
    result = await boot(root, paths)
    assert result.returncode == 0, result.console[-3000:]
    probe = harness.parse_probe((paths["results"] / "probe.txt").read_text())
    journal = (paths["results"] / "firstboot.journal").read_text()
    for text in (result.console, journal):
        assert "REJECTED: /boot/firmware/gateway.yaml:1: gateway.id:" in text
        assert "REJECTED: /boot/firmware/gateway.yaml:2: mqtt.port:" in text
    assert probe["firstboot"] == "exit-code"  # visible in systemctl --failed
    # no config was installed, so the agent stays inactive instead of failing in a loop
    assert probe["ActiveState"] == "inactive" and probe["etc"].strip() == ""
    assert (paths["drop"] / "gateway.yaml.rejected").exists()
    assert "mqtt.port" in (paths["drop"] / "batigate-errors.txt").read_text()
