"""A gateway's RAUC, for tests: Debian's `rauc` service on a private D-Bus, configured by the
image's own images/rauc/system.conf with its two root slots turned into files, its U-Boot backend
writing a real U-Boot environment file through the real fw_setenv (libubootenv-tool), a test CA
as keyring, and bundles made by `rauc bundle` from tiny ext4 root file systems.

What is played here: the reboot. `reboot()` stops the service, takes the slot the way
images/rauc/boot.cmd does under U-Boot (first slot of BOOT_ORDER with attempts left, one
attempt less; tests/images/test_boot_chooser.py runs the real script under real U-Boot on the
same kind of environment), and starts the service again telling it which slot was booted.

Bundles are `plain` (squashfs through a loop device): `verity` bundles need the kernel's
device-mapper, which the CI machines do not have; the image's bundles are `verity`
(images/rauc/bundle.sh), and system.conf accepts both.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from tests.images.harness import IMAGES

TOOLS = ("rauc", "mksquashfs", "fw_setenv", "fw_printenv", "mkenvimage", "dbus-daemon",
         "mkfs.ext4", "openssl")
ENV_SIZE = 0x4000  # as in images/rauc/fw_env.config


def require_tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None and
               not Path("/usr/sbin", tool).exists() and not Path("/sbin", tool).exists()]
    if missing:
        raise RuntimeError(f"missing {missing}: run images/host-setup.sh (as root)")


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(folder: Path, name: str) -> Path:
    """A CA and a release signer issued by it (EC P-256) in `folder`; returns the folder."""
    folder.mkdir(parents=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "30",
            "-subj", f"/CN={name} release CA", cwd=folder)
    openssl("req", *ec, "-keyout", "signer.key", "-out", "signer.csr",
            "-subj", f"/CN={name} release signer", cwd=folder)
    openssl("x509", "-req", "-in", "signer.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "signer.pem", "-days", "30", cwd=folder)
    return folder


def mkfs(*args: str) -> None:
    mke2fs = shutil.which("mkfs.ext4") or "/sbin/mkfs.ext4"
    subprocess.run([mke2fs, "-q", *args], check=True, capture_output=True, timeout=60)


def make_bundle(work: Path, version: str, signer: Path, compatible: str = "batigate-pi-arm64",
                fmt: str = "plain") -> Path:
    """A signed bundle of a 2 MiB ext4 root whose /etc/batigate-system says `version`."""
    src = work / f"bundle-{version}-{signer.name}"
    (src / "root/etc").mkdir(parents=True)
    (src / "root/boot").mkdir()
    (src / "root/etc/batigate-system").write_text(version + "\n")
    # Random bytes: a squashfs of only zeros and names is 4 KiB, too small for a verity bundle.
    (src / "root/boot/vmlinuz").write_bytes(b"kernel of " + version.encode() + os.urandom(65536))
    (src / "content").mkdir()
    mkfs("-d", str(src / "root"), str(src / "content/rootfs.ext4"), "2M")
    (src / "content/manifest.raucm").write_text(
        f"[update]\ncompatible={compatible}\nversion={version}\n\n[bundle]\nformat={fmt}\n\n"
        "[image.rootfs]\nfilename=rootfs.ext4\n")
    out = work / f"system-{version}-{signer.name}.raucb"
    made = subprocess.run(["rauc", "bundle", f"--cert={signer / 'signer.pem'}",
                           f"--key={signer / 'signer.key'}", str(src / "content"), str(out)],
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stdout + made.stderr
    return out


class Rauc:
    """RAUC of a gateway with slots A (booted) and B, on a D-Bus of its own under `home`."""

    def __init__(self, home: Path, keyring: Path) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.bus = f"unix:path={home / 'bus'}"
        self.env_file = home / "uboot.env"
        self.fw_config = home / "fw_env.config"
        self.slots = {"A": home / "slotA", "B": home / "slotB"}
        for path in self.slots.values():
            mkfs(str(path), "4M")
        text = (IMAGES / "rauc/system.conf").read_text()
        text = text.replace("/dev/disk/by-partuuid/ba716a7e-02", str(self.slots["A"]))
        text = text.replace("/dev/disk/by-partuuid/ba716a7e-03", str(self.slots["B"]))
        text = text.replace("path=/etc/rauc/keyring.pem", f"path={keyring}")
        text = text.replace("data-directory=/data/rauc",
                            f"data-directory={home / 'data'}\nmountprefix={home / 'mnt'}")
        assert str(self.slots["B"]) in text and str(keyring) in text, "system.conf changed?"
        self.conf = home / "system.conf"
        self.conf.write_text(text)
        (home / "data").mkdir()
        (home / "mnt").mkdir()
        # The image's fw_env.config names the FAT's uboot.env; here the file of the test.
        self.fw_config.write_text(f"{self.env_file} 0x0 {ENV_SIZE:#x}\n")
        self.write_env({"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"})
        # RAUC runs fw_setenv/fw_printenv from PATH with the default config file: these pass
        # the test's config to the real programs.
        wrappers = home / "bin"
        wrappers.mkdir()
        for tool in ("fw_setenv", "fw_printenv"):
            (wrappers / tool).write_text(
                f'#!/bin/sh\nexec {shutil.which(tool)} -c {self.fw_config} "$@"\n')
            (wrappers / tool).chmod(0o755)
        self.client_env = {"DBUS_SESSION_BUS_ADDRESS": self.bus, "DBUS_STARTER_BUS_TYPE": "session"}
        self.service_env = {**os.environ, **self.client_env,
                            "PATH": f"{wrappers}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
        self.dbus = subprocess.Popen(["dbus-daemon", "--session", f"--address={self.bus}",
                                      "--nofork", "--nopidfile", "--print-address=1"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        # It prints its address once it listens: before that, rauc service fails to connect
        # (seen once in a full run). An exit closes the pipe: readline gives b"" then.
        assert self.dbus.stdout is not None
        assert self.dbus.stdout.readline(), "dbus-daemon did not start"
        self.service: subprocess.Popen[bytes] | None = None
        self.log = home / "rauc-service.log"
        self.booted = "A"

    def write_env(self, values: dict[str, str]) -> None:
        text = "".join(f"{k}={v}\n" for k, v in values.items())
        subprocess.run(["mkenvimage", "-s", str(ENV_SIZE), "-o", str(self.env_file), "-"],
                       input=text.encode(), check=True, capture_output=True, timeout=30)

    def env(self) -> dict[str, str]:
        out = subprocess.run([shutil.which("fw_printenv") or "fw_printenv", "-c",
                              str(self.fw_config)],
                             capture_output=True, text=True, check=True, timeout=30).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.service = subprocess.Popen(
                ["rauc", f"--conf={self.conf}", "service", f"--override-boot-slot={self.booted}"],
                env=self.service_env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while True:  # until the service owns its name on the bus
            if self.status_json(check=False) is not None:
                return
            assert self.service.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.05)

    def stop(self) -> None:
        if self.service is not None:
            self.service.terminate()
            self.service.wait(10)
            self.service = None

    def close(self) -> None:
        self.stop()
        self.dbus.terminate()
        self.dbus.wait(10)
        self.dbus.stdout.close()

    def client(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["rauc", *args], env={**os.environ, **self.client_env},
                              capture_output=True, text=True, timeout=60)

    def status_json(self, *, check: bool = True) -> dict | None:
        ran = self.client("status", "--output-format=json")
        if ran.returncode != 0:
            assert not check, ran.stdout + ran.stderr
            return None
        return json.loads(ran.stdout[ran.stdout.index("{"):])

    def boot_status(self) -> dict[str, str]:
        """bootname -> RAUC's boot_status (good/bad) of the slot."""
        doc = self.status_json()
        assert doc is not None
        return {info["bootname"]: info["boot_status"] for entry in doc["slots"]
                for info in entry.values()}

    def chooser(self) -> str | None:
        """The decision of images/rauc/boot.cmd on the current environment (saved back)."""
        values = self.env()
        for slot in values.get("BOOT_ORDER", "").split():
            left = int(values.get(f"BOOT_{slot}_LEFT", "0"))
            if left > 0:
                values[f"BOOT_{slot}_LEFT"] = str(left - 1)
                self.write_env(values)
                return slot
        return None

    def reboot(self) -> str:
        self.stop()
        slot = self.chooser()
        assert slot is not None, f"no slot left to boot: {self.env()}"
        self.booted = slot
        self.start()
        return slot

    def root_file(self, slot: str, path: str) -> str:
        """A file of a slot's ext4, read with debugfs (no mount needed)."""
        debugfs = shutil.which("debugfs") or "/sbin/debugfs"
        out = subprocess.run([debugfs, "-R", f"cat {path}", str(self.slots[slot])],
                             capture_output=True, text=True, timeout=30)
        return out.stdout

    def version_in(self, slot: str) -> str | None:
        text = self.root_file(slot, "/etc/batigate-system").strip()
        return text if re.fullmatch(r"[0-9][0-9A-Za-z.+_-]*", text) else None
