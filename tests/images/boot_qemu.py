"""The built Raspberry Pi image boots under qemu-system-aarch64 and reports to a broker on the host.

Not part of `make test` (the file name does not match test_*.py): it needs the built image
(`make image`, ~13 min) and boots it under full emulation (several minutes). Run by
`make image-test`. See tests/images/qemu.py for the machine and the network.

A technician's drop (gateway.yaml, the CA, the gateway's certificate and key) goes on the FAT of a
copy of the image. The simulated building (Modbus TCP + M-Bus) and a mutual-TLS mosquitto run on
the host's loopback; the guest reaches them only through guestfwd. The test checks: multi-user
reached, first boot installed the drop and removed it from the FAT, the data partition grew to
the card, the hardened agent runs as `batigate`, `batigate selftest` passes inside the guest, and
the backend receives the gateway's birth and telemetry of the building. It prints the time from
power-on (QEMU start) to the first message (under TCG emulation, 2 vCPUs on a shared host: a real
Pi 3 or 4 is faster).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import yaml

from agent.sim.building import Building, demo_buses, demo_devices
from tests.commands import rauc_system
from tests.images import qemu
from tests.images.harness import BUILD
from tests.provisioning.pki import BACKEND, NAMESPACE, TlsMosquitto, make_pki

pytestmark = pytest.mark.timeout(1800)
GW, SITE = "gw-qemu", "res-qemu"
BOOT_BUDGET = 1200.0  # seconds from power-on to the probe's end and the first telemetry


def system_update(workdir: Path) -> dict[str, bytes]:
    """A small `verity` RAUC bundle signed by the image's release CA (build/images/rauc-pki, made
    by `make image`), and the uboot.env that the Pi's U-Boot writes at its first boot."""
    bundle = rauc_system.make_bundle(workdir / "bundle", "9.9.9-qemu", BUILD / "rauc-pki",
                                     fmt="verity")
    env = subprocess.run(["mkenvimage", "-s", "0x4000", "-o", "-", "-"], check=True,
                         input=b"BOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=3\n",
                         capture_output=True, timeout=30).stdout
    return {"batigate-update.raucb": bundle.read_bytes(), "uboot.env": env}


def technician_drop(pki: Any) -> dict[str, bytes]:
    cert, key = pki.client(GW, days=365)
    config = {
        "gateway": {"id": GW, "site": SITE},
        "mqtt": {"host": qemu.GUEST_HOST, "port": 8883,
                 "tls": {"ca": "/etc/batigate/ca.pem", "cert": "/etc/batigate/gw.crt",
                         "key": "/etc/batigate/gw.key"}},
        "health": {"interval": "30s"},
        "buses": demo_buses(qemu.GUEST_HOST, 502, 2400),
        "devices": demo_devices(poll="5s", meter_poll="30s", timeout="3s"),
    }
    return {"gateway.yaml": yaml.safe_dump(config, sort_keys=False).encode(),
            "ca.pem": pki.ca_file.read_bytes(), "gw.crt": cert.read_bytes(),
            "gw.key": key.read_bytes()}


async def test_image_boots_installs_the_drop_and_publishes(tmp_path: Path) -> None:
    qemu.require_tools()
    pki = make_pki(tmp_path / "pki")
    (tmp_path / "broker").mkdir()
    broker = TlsMosquitto(tmp_path / "broker", pki,
                          server_names=[qemu.GUEST_HOST, "127.0.0.1", "localhost"])
    broker.start()
    building = Building()
    modbus_port, mbus_port = await building.start(0, 0)
    card = qemu.card_copy(tmp_path)
    qemu.fat_put(card, {**technician_drop(pki), **system_update(tmp_path),
                        "batigate-probe.sh": qemu.PROBE.encode(),
                        "batigate-probe.port": f"{broker.port}\n".encode()}, tmp_path)
    backend_cert, backend_key = pki.client(BACKEND)
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    context.load_cert_chain(str(backend_cert), str(backend_key))
    seen: list[tuple[float, str, Any]] = []

    async def backend() -> None:
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier=BACKEND,
                                  tls_context=context) as client:
            await client.subscribe(f"{NAMESPACE}/{SITE}/{GW}/#", qos=1)
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                seen.append((time.monotonic(), str(message.topic), json.loads(message.payload)))

    def kinds() -> set[str]:
        return {topic.rsplit("/", 1)[-1] for _, topic, _ in seen}

    listener = asyncio.create_task(backend())
    machine = None
    try:
        await asyncio.sleep(1)
        machine = await qemu.boot(card, tmp_path, [qemu.Forward(8883, broker.port),
                                                   qemu.Forward(502, modbus_port),
                                                   qemu.Forward(2400, mbus_port)])
        probe = await machine.wait_probe(BOOT_BUDGET)
        deadline = machine.started + BOOT_BUDGET
        while not {"birth", "tm"} <= kinds() and time.monotonic() < deadline:
            await asyncio.sleep(1)
    finally:
        if machine is not None:
            await machine.stop()
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        await building.stop()
        broker.stop()
    first = {}
    for at, topic, _ in seen:
        first.setdefault(topic.rsplit("/", 1)[-1], at - machine.started)
    figures = (
        "image boot under qemu-system-aarch64 -M virt (TCG emulation, 2 vCPUs, shared 2-core "
        "host; a real Pi is faster):\n"
        f"  power-on -> multi-user.target   {int(probe['multi_user_us']) / 1e6:7.1f} s "
        "(guest monotonic clock, from kernel start)\n"
        f"  power-on -> batigate running    {int(probe['agent_running_us']) / 1e6:7.1f} s\n"
        f"  power-on -> first message       {min(first.values(), default=float('nan')):7.1f} s "
        "(QEMU start to the backend's receipt)\n"
        f"  power-on -> birth               {first.get('birth', float('nan')):7.1f} s\n"
        f"  power-on -> first telemetry     {first.get('tm', float('nan')):7.1f} s\n"
        f"  data partition {probe.get('data_part_mib')} MiB on a {probe.get('disk_mib')} MiB card")
    print("\n" + figures)
    (BUILD / "boot-figures.txt").write_text(figures + "\n")
    console = machine.tail()
    assert probe["arch"].startswith("aarch64"), probe
    assert probe["batigate"].split() == ["active", "running", "success", "0"], (probe, console)
    assert probe["batigate-firstboot"].split()[:3] == ["active", "exited", "success"], probe
    assert probe["agent_user"] == "batigate"
    assert probe["etc"].split() == ["ca.pem", "gateway.yaml", "gw.crt", "gw.key"], probe
    # no key, certificate or config left on the FAT any laptop can read; the status file remains
    assert set(probe["fat"].split()) - {"batigate-bootargs.txt", "batigate-update.raucb"} == {
        "batigate-probe.port", "batigate-probe.sh", "batigate-status.txt"}, probe
    # the guest reaches only the forwarded ports: not the host's broker port directly, not the
    # world, not an unforwarded port of the forwarding address
    assert probe["escape"].split() == [f"10.0.2.2:{broker.port}=blocked", "1.1.1.1:443=blocked",
                                       "10.0.2.100:22=blocked"], probe
    assert probe["root"] == "/dev/vda2"  # slot A (U-Boot's choice, or cmdline.txt's PARTUUID)
    # the data partition grew from 512 MiB to the end of the 4 GiB card, online
    assert probe["batigate-growdata"].split()[:3] == ["active", "exited", "success"], probe
    assert int(probe["data_part_mib"]) > 1300 and int(probe["data_mib"]) > 1200, probe
    assert probe["failed_units"].strip() == "", probe
    # RAUC answers the agent's user over D-Bus and knows it booted slot A; nobody else may ask
    assert probe["rauc"].split() == ["batigate-pi-arm64", "A", "2"], probe["rauc"]
    assert probe["rauc_other_user"] == "refused", probe
    # RAUC installed the verity bundle given by the agent's user into slot B, and made B first
    # in U-Boot's environment on the FAT (its attempts counted from 3)
    assert probe["rauc_install"].endswith("succeeded"), probe["rauc_install"]
    assert probe["boot_env"].split() == ["BOOT_ORDER=B", "A", "BOOT_A_LEFT=3", "BOOT_B_LEFT=3"], \
        probe["boot_env"]
    assert probe["slot_b"].strip() == "9.9.9-qemu", probe
    # the root units that reboot for the agent and give up a slot on trial are armed
    assert probe["update_units"].split() == ["active", "active"], probe
    assert probe["agent_tracebacks"] == "0"
    selftest = json.loads(probe["selftest"])
    assert probe["selftest_rc"] == "0" and selftest["ok"], selftest
    results = {check["name"]: check["result"] for check in selftest["checks"]}
    assert results["broker"] == results["bus lan"] == results["bus meters"] == "ok", selftest
    assert results["certificate"] == "ok", selftest  # chains to the CA, matches the key
    assert all(result == "ok" for result in results.values()), selftest
    # the backend sees the gateway: online state, birth, and telemetry from the building
    births = [body for _, topic, body in seen if topic.endswith("/birth")]
    assert births and births[0]["gw"] == GW, kinds()
    telemetry = {topic.split("/")[-2] for _, topic, _ in seen if topic.endswith("/tm")}
    assert telemetry & {"vmc", "pump", "lift"}, telemetry
    root = f"{NAMESPACE}/{SITE}/{GW}"
    assert [body["online"] for _, topic, body in seen if topic == f"{root}/state"][0] is True
