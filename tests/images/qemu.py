"""Boot the built Raspberry Pi image (arm64) under qemu-system-aarch64, as a technician prepares it.

Machine: QEMU's `virt` board, not `raspi3b`. The image's own kernel and initrd (read from its FAT
partition) and its own root slot boot unchanged, but `raspi3b` has no network device that QEMU's
user networking can drive (its Ethernet is a USB LAN9514 that QEMU does not emulate), and without
a network there is no broker to publish to. `virt` gives virtio-blk for the SD card (the whole
image, all four partitions, as /dev/vda) and virtio-net. What `virt` skips is the Pi's firmware
path (bootcode.bin/start*.elf, config.txt, the bcm2837 device tree): `check-image.sh` checks
those files statically; the issue's manual `raspi3b` boot showed they reach userspace.

Network: QEMU user networking with `restrict=on` (no route from the guest to the host or beyond)
and one `guestfwd` per service: the guest's 10.0.2.100:PORT runs `socat` to 127.0.0.1:HOSTPORT
for each connection. Nothing else is reachable.

The image itself is not changed for the test: a copy (sparse, grown to a power of two, like a
larger SD card) gets the technician's files on its FAT with mtools, plus a probe script that the
kernel command line runs as a systemd unit (`systemd.run=`, systemd-run-generator). The probe
writes `PROBE key=value` lines to the serial console, which is logged to a file.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.images.harness import BUILD

IMAGE = Path(os.environ.get("BATIGATE_IMAGE", BUILD / "batigate-pi-arm64.img"))
GUEST_HOST = "10.0.2.100"  # the address the guest uses for every forwarded host service
TOOLS = ("qemu-system-aarch64", "mcopy", "mtype", "sfdisk", "socat")

PROBE = r"""#!/bin/sh
# The image test's probe (run by systemd.run= from the kernel command line, as root).
# systemd orders the systemd.run unit before the boot's target, so it cannot wait for
# multi-user.target itself: it hands over to a transient unit with no ordering and ends.
if [ "${1:-}" != run ]; then
  exec systemd-run --no-block --unit=batigate-probe /bin/sh "$0" run
fi
out=/dev/ttyAMA0
say() { echo "PROBE $*" > $out; }
wait_for() {  # wait_for SECONDS COMMAND...: poll once a second, bounded
  limit=$1; shift
  for i in $(seq "$limit"); do "$@" && return 0; sleep 1; done
  return 1
}
state_is() { [ "$(systemctl show -P ActiveState "$1")" = "$2" ]; }
running() { [ "$(systemctl show -P SubState "$1")" = running ]; }
finished() { state_is "$1" active || state_is "$1" failed; }  # a oneshot with RemainAfterExit
say started
wait_for 600 state_is multi-user.target active
say "multi_user_us=$(systemctl show -P ActiveEnterTimestampMonotonic multi-user.target)"
wait_for 300 running batigate.service
wait_for 300 finished batigate-growdata.service
say "agent_running_us=$(systemctl show -P ActiveEnterTimestampMonotonic batigate.service)"
for unit in batigate batigate-firstboot batigate-growdata; do
  # one property per call: `show -P A,B` prints them in systemd's own order, not the asked one
  say "$unit=$(for p in ActiveState SubState Result NRestarts; do systemctl show -P $p $unit.service; done | tr '\n' ' ')"
done
say "agent_user=$(stat -c %U /proc/"$(systemctl show -P MainPID batigate.service)")"
say "etc=$(ls /etc/batigate | tr '\n' ' ')"
say "fat=$(ls /boot/firmware | grep -iE 'gateway|\.pem|\.crt|\.key|batigate-' | tr '\n' ' ')"
say "root=$(findmnt -n -o SOURCE /)"
say "data_mib=$(df -m --output=size /data | tail -1 | tr -d ' ')"
say "data_part_mib=$(( $(lsblk -bdno SIZE "$(findmnt -n -o SOURCE /data)") / 1048576 ))"
say "disk_mib=$(( $(lsblk -bdno SIZE /dev/vda) / 1048576 ))"
say "arch=$(uname -m) kernel=$(uname -r)"
# restrict=on: the host (10.0.2.2, where the broker really listens) and the world are out of reach
say "escape=$(/opt/batigate/venv/bin/python - "$(cat /boot/firmware/batigate-probe.port)" <<'PY'
import socket, sys
found = []
for host, port in (("10.0.2.2", int(sys.argv[1])), ("1.1.1.1", 443), ("10.0.2.100", 22)):
    try:
        socket.create_connection((host, port), timeout=5).close()
        found.append(f"{host}:{port}=open")
    except OSError:
        found.append(f"{host}:{port}=blocked")
print(" ".join(found))
PY
)"
# RAUC as the agent reaches it: its D-Bus service (activated on demand), the booted slot from
# rauc.slot= on the kernel command line; and the D-Bus policy refusing any other user.
say "rauc=$(runuser -u batigate -- rauc status --output-format=json 2>&1 | /opt/batigate/venv/bin/python -c '
import json, sys
text = sys.stdin.read()
try:
    doc = json.loads(text[text.index("{"):])
    print(doc["compatible"], doc["booted"], len(doc["slots"]))
except (ValueError, KeyError):
    print("unreadable", repr(text[-300:]))
')"
say "update_units=$(for u in batigate-reboot.path batigate-slot-deadline.timer; do systemctl show -P ActiveState $u; done | tr '\n' ' ')"
say "rauc_other_user=$(runuser -u nobody -- rauc status >/dev/null 2>&1 && echo allowed || echo refused)"
# A whole-system bundle left on the FAT by the test: installed as the agent does it (user
# batigate, its file in /var/lib/batigate), into slot B; U-Boot's uboot.env on the FAT is where
# RAUC's fw_setenv puts the switch. No reboot: QEMU's U-Boot does not read that file.
if [ -e /boot/firmware/batigate-update.raucb ]; then
  install -o batigate -m 600 /boot/firmware/batigate-update.raucb /var/lib/batigate/update.raucb
  say "rauc_install=$(runuser -u batigate -- rauc install /var/lib/batigate/update.raucb 2>&1 | tail -1)"
  say "boot_env=$(fw_printenv BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT 2>&1 | tr '\n' ' ')"
  say "slot_b=$(debugfs -R 'cat /etc/batigate-system' /dev/disk/by-partuuid/ba716a7e-03 2>/dev/null)"
fi
say "failed_units=$(systemctl list-units --state=failed --no-legend --plain | awk '{print $1}' | tr '\n' ' ')"
json=$(runuser -u batigate -- /opt/batigate/venv/bin/batigate selftest --json --timeout 20 \
       --config /etc/batigate/gateway.yaml 2>/dev/null)
say "selftest_rc=$?"
say "selftest=$(echo "$json" | tr -d '\n')"
# the agent's import and self-checks of the image venv, on the emulated CPU
say "venv=$(/opt/batigate/venv/bin/python -c 'import platform, sys; print(platform.machine(), sys.version.split()[0])')"
journalctl -b --no-pager -o cat -u batigate-growdata.service | sed 's/^/PROBE growdata_log=/' > $out
journalctl -b --no-pager -o cat -u batigate.service | grep -c Traceback | sed 's/^/PROBE agent_tracebacks=/' > $out
say done
"""


def require_tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing or os.geteuid() != 0:
        raise RuntimeError(f"the boot test needs root and {', '.join(TOOLS)} (missing: "
                           f"{missing or 'root'}): run `images/host-setup.sh` first")
    if not IMAGE.is_file():
        raise RuntimeError(f"{IMAGE} does not exist: run `make image` first")


def partitions(image: Path) -> list[dict[str, int]]:
    table = json.loads(subprocess.run(["sfdisk", "-J", str(image)], check=True,
                                      capture_output=True, text=True, timeout=30).stdout)
    return table["partitiontable"]["partitions"]


def fat(image: Path) -> str:
    """The mtools name of the image's FAT partition (image@@byte-offset)."""
    return f"{image}@@{partitions(image)[0]['start'] * 512}"


def fat_put(image: Path, files: dict[str, bytes], workdir: Path) -> None:
    """Copy files to the FAT's root, as a technician does from a laptop."""
    for name, data in files.items():
        local = workdir / name
        local.write_bytes(data)
        subprocess.run(["mcopy", "-o", "-i", fat(image), str(local), f"::{name}"], check=True,
                       timeout=30)
        local.unlink()


def fat_get(image: Path, name: str, out: Path) -> Path:
    subprocess.run(["mcopy", "-o", "-i", fat(image), f"::{name}", str(out)], check=True,
                   timeout=60)
    return out


def fat_list(image: Path) -> list[str]:
    listing = subprocess.run(["mdir", "-b", "-i", fat(image), "::"], check=True,
                             capture_output=True, text=True, timeout=30).stdout
    return [line.rsplit("/", 1)[-1] for line in listing.split()]


def card_copy(workdir: Path, size: int = 4 << 30) -> Path:
    """A sparse copy of the image grown to `size` bytes: a larger SD card (and a power of two,
    which QEMU's SD card models require; kept here so the same copy fits both machines)."""
    copy = workdir / "card.img"
    subprocess.run(["cp", "--sparse=always", str(IMAGE), str(copy)], check=True, timeout=300)
    if copy.stat().st_size > size:
        raise RuntimeError(f"{IMAGE} is larger than the {size} bytes card")
    os.truncate(copy, size)
    return copy


@dataclass
class Forward:
    guest_port: int
    host_port: int

    def netdev(self) -> str:
        # cmd: forwards each guest connection to a new socat (a chardev target would be one
        # connection for the machine's lifetime); the commas of the command are doubled for QEMU.
        return (f"guestfwd=tcp:{GUEST_HOST}:{self.guest_port}-cmd:socat - "
                f"TCP:127.0.0.1:{self.host_port}")


@dataclass
class Machine:
    proc: asyncio.subprocess.Process
    console: Path
    started: float  # time.monotonic() at power-on (the QEMU process start)
    probe: dict[str, str] = field(default_factory=dict)

    def read_probe(self) -> dict[str, str]:
        text = self.console.read_text(errors="replace") if self.console.exists() else ""
        for line in text.splitlines():
            if line.startswith("PROBE ") and "=" in line:
                key, value = line[6:].split("=", 1)
                self.probe[key] = value.rstrip("\r")
            elif line.strip() == "PROBE done":
                self.probe["done"] = "1"
        return self.probe

    async def wait_probe(self, timeout: float) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while "done" not in self.read_probe():
            if self.proc.returncode is not None:
                raise AssertionError(f"QEMU exited ({self.proc.returncode}) before the probe "
                                     f"finished; console:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the probe did not finish in {timeout:.0f}s; console:\n"
                                     f"{self.tail()}")
            await asyncio.sleep(1)
        return self.probe

    def tail(self, size: int = 6000) -> str:
        return self.console.read_text(errors="replace")[-size:] if self.console.exists() else ""

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def boot_files(config_txt: Path) -> tuple[str, str]:
    """The kernel and initramfs that the Pi firmware would load: `kernel=` and `initramfs NAME`."""
    kernel = initrd = None
    for line in config_txt.read_text().splitlines():
        if line.startswith("kernel="):
            kernel = line.split("=", 1)[1].strip()
        elif line.startswith("initramfs "):
            initrd = line.split()[1]
    if kernel is None or initrd is None:
        raise AssertionError(f"config.txt names no kernel= or initramfs: {config_txt.read_text()}")
    return kernel, initrd


# Debian's u-boot-qemu: the image's boot chooser (boot.scr, images/rauc/boot.cmd) under `virt`.
UBOOT = Path("/usr/lib/u-boot/qemu_arm64/u-boot.bin")
# systemd.run= makes its unit the default target; the boot must still aim at multi-user.target
# (the image's own default), so the probe unit is only pulled in beside it.
PROBE_ARGS = ["console=ttyAMA0,115200", "systemd.run=/boot/firmware/batigate-probe.sh",
              "systemd.run_success_action=none", "systemd.run_failure_action=none",
              "systemd.unit=multi-user.target", "systemd.wants=kernel-command-line.service"]


def firmware_args(card: Path, workdir: Path) -> list[str]:
    """How the machine starts the image. With U-Boot in the image (config.txt: kernel=u-boot.bin)
    Debian's QEMU build of U-Boot runs as the firmware and sources the image's boot.scr, which
    chooses the slot and boots that slot's own kernel and initrd; the probe's kernel arguments go
    in batigate-bootargs.txt on the FAT, which boot.scr reads. Otherwise QEMU loads the kernel and
    initrd that config.txt names, with its cmdline.txt."""
    kernel_name, initrd_name = boot_files(fat_get(card, "config.txt", workdir / "config.txt"))
    if kernel_name == "u-boot.bin":
        if not UBOOT.exists():
            raise RuntimeError(f"{UBOOT} missing: run images/host-setup.sh")
        fat_put(card, {"batigate-bootargs.txt":
                       ("rauc_extra_args=" + " ".join(PROBE_ARGS) + "\n").encode()}, workdir)
        return ["-bios", str(UBOOT)]
    kernel = fat_get(card, kernel_name, workdir / "vmlinuz")
    initrd = fat_get(card, initrd_name, workdir / "initrd.img")
    cmdline = fat_get(card, "cmdline.txt", workdir / "cmdline.txt").read_text().split()
    cmdline = [arg for arg in cmdline if not arg.startswith("console=")] + PROBE_ARGS
    return ["-kernel", str(kernel), "-initrd", str(initrd), "-append", " ".join(cmdline)]


async def boot(card: Path, workdir: Path, forwards: list[Forward]) -> Machine:
    """Power on `card` under `virt` (see `firmware_args`), the console on the virt board's PL011
    UART, the probe added."""
    firmware = firmware_args(card, workdir)
    netdev = ",".join(["user", "id=net0", "restrict=on"] + [f.netdev() for f in forwards])
    console = workdir / "console.log"
    args = ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72", "-smp", "2", "-m", "1024",
            *firmware,
            "-drive", f"file={card},format=raw,if=none,id=card",
            "-device", "virtio-blk-pci,drive=card",
            "-netdev", netdev, "-device", "virtio-net-pci,netdev=net0,romfile=",
            "-display", "none", "-monitor", "none", "-serial", f"file:{console}",
            "-no-reboot"]
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(*args, stdin=subprocess.DEVNULL,
                                                stdout=subprocess.DEVNULL,
                                                stderr=(workdir / "qemu.err").open("wb"))
    return Machine(proc, console, started)
