"""The agent's venv inside the built image, run on arm64 under qemu-user (chroot into root slot A).

Not part of `make test` (the file name does not match test_*.py): it needs the built image
(`make image`). Run by `make image-test`.

Slot A of the image file is loop-mounted read-only (a tmpfs over /tmp, /proc mounted), and the
image's own /opt/batigate/venv runs there, emulated: every module of the four packages imports;
every compiled extension is an aarch64 ELF whose glibc needs are met by the image's libc; and the
agent's own checks pass against real peers: `batigate config check`, the simulated building
served by the image's agent (`batigate sim`, aarch64), `batigate read` of a Modbus device through
it, and `batigate selftest` against a mosquitto on the host.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from agent.sim.building import demo_buses, demo_devices
from tests.broker import Mosquitto, free_port, wait_for_port
from tests.images import qemu

pytestmark = pytest.mark.timeout(900)
ELF_AARCH64 = 183  # e_machine of an ARM 64-bit ELF


@contextlib.contextmanager
def slot_a(workdir: Path) -> Iterator[Path]:
    part = qemu.partitions(qemu.IMAGE)[1]
    mnt = workdir / "rootA"
    mnt.mkdir()
    mounted: list[Path] = []
    try:
        subprocess.run(["mount", "-o", f"ro,noload,loop,offset={part['start'] * 512},"
                        f"sizelimit={part['size'] * 512}", str(qemu.IMAGE), str(mnt)],
                       check=True, timeout=60)
        mounted.append(mnt)
        for target, kind in (("proc", "proc"), ("tmp", "tmpfs")):
            subprocess.run(["mount", "-t", kind, kind, str(mnt / target)], check=True,
                           timeout=30)
            mounted.append(mnt / target)
        yield mnt
    finally:
        for target in reversed(mounted):
            subprocess.run(["umount", str(target)], check=False, timeout=60)


def in_root(root: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["chroot", str(root), "env", "-i", "PATH=/usr/sbin:/usr/bin:/bin",
                           "HOME=/tmp", "LC_ALL=C.UTF-8", *args],
                          capture_output=True, text=True, timeout=timeout)


IMPORT_ALL = """
import importlib, pkgutil, platform, sys
names = []
for top in ("agent", "drivers", "rules", "provisioning"):
    package = importlib.import_module(top)
    names.append(top)
    for info in pkgutil.walk_packages(package.__path__, top + "."):
        if info.name.endswith(".__main__"):  # runs the CLI when imported
            continue
        importlib.import_module(info.name)
        names.append(info.name)
print(platform.machine(), sys.version.split()[0], len(names))
"""


def test_every_module_imports_and_extensions_are_aarch64(tmp_path: Path) -> None:
    qemu.require_tools()
    with slot_a(tmp_path) as root:
        result = in_root(root, "/opt/batigate/venv/bin/python", "-B", "-c", IMPORT_ALL)
        assert result.returncode == 0, result.stderr[-3000:]
        machine, version, count = result.stdout.split()
        assert (machine, version[:5]) == ("aarch64", "3.11.") and int(count) > 80, result.stdout
        image_glibc = max(_glibc_versions(root / "usr/lib/aarch64-linux-gnu/libc.so.6"))
        extensions = list((root / "opt/batigate/venv/lib").rglob("*.so"))
        assert len(extensions) >= 3, extensions  # pydantic_core, cryptography, psutil at least
        for ext in extensions:
            head = ext.read_bytes()[:20]
            assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == \
                ELF_AARCH64, ext
            needs = _glibc_versions(ext)
            assert not needs or max(needs) <= image_glibc, (ext, max(needs), image_glibc)


def _glibc_versions(path: Path) -> list[tuple[int, ...]]:
    """The GLIBC_x.y version names in an ELF: those libc defines, or those an extension needs."""
    found = re.findall(rb"GLIBC_(\d+)\.(\d+)(?:\.(\d+))?\x00", path.read_bytes())
    return [tuple(int(part) for part in match if part) for match in found]


def test_agent_checks_pass_on_aarch64_against_real_peers(tmp_path: Path) -> None:
    qemu.require_tools()
    broker = Mosquitto(tmp_path)
    broker.start()
    modbus_port, mbus_port = free_port(), free_port()
    with slot_a(tmp_path) as root:
        config = {
            "gateway": {"id": "gw-arm64", "site": "ci"},
            "mqtt": {"host": "127.0.0.1", "port": broker.port, "tls": False},
            "buffer": {"path": "/tmp/outbox.db"},
            "control": {"socket": "/tmp/control.sock"},
            "buses": demo_buses("127.0.0.1", modbus_port, mbus_port),
            "devices": demo_devices(poll="5s", meter_poll="30s", timeout="3s"),
        }
        (root / "tmp/gateway.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        checked = in_root(root, "/opt/batigate/venv/bin/batigate", "config", "check",
                          "/tmp/gateway.yaml")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        # the simulated building, served by the image's (aarch64) agent in the same chroot
        sim = subprocess.Popen(["chroot", str(root), "env", "-i", "PATH=/usr/bin:/bin",
                                "HOME=/tmp", "/opt/batigate/venv/bin/batigate", "sim",
                                "--modbus-port", str(modbus_port), "--mbus-port", str(mbus_port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            started = time.monotonic()
            wait_for_port(modbus_port, timeout=180)
            wait_for_port(mbus_port, timeout=60)
            print(f"\nbatigate sim up under qemu-user in {time.monotonic() - started:.1f} s")
            read = in_root(root, "/opt/batigate/venv/bin/batigate", "read", "vmc", "--json",
                           "--config", "/tmp/gateway.yaml")
            assert read.returncode == 0, read.stdout + read.stderr
            assert "exhaust_pressure" in read.stdout, read.stdout
            selftest = in_root(root, "/opt/batigate/venv/bin/batigate", "selftest", "--json",
                               "--timeout", "20", "--config", "/tmp/gateway.yaml")
            report = json.loads(selftest.stdout)
            results = {check["name"]: check["result"] for check in report["checks"]}
            assert results["broker"] == results["bus lan"] == results["bus meters"] == "ok", report
            assert selftest.returncode == 0 or all(r != "fail" for r in results.values()), report
        finally:
            sim.terminate()
            try:
                sim.wait(30)
            except subprocess.TimeoutExpired:
                sim.kill()
                sim.wait()
            broker.stop()
