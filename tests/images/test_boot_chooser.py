"""The boot chooser of the whole-system update: images/rauc/boot.cmd (made into boot.scr with
`mkimage`, as the image build does) run by real U-Boot (Debian's u-boot-qemu, `qemu_arm64`) on
`qemu-system-aarch64 -M virt`, with a disk laid out like the image: FAT (boot.scr), slot A,
slot B, disk signature ba716a7e.

Between boots the test changes U-Boot's environment with the real fw_setenv, as RAUC does on the
gateway (`rauc install`: BOOT_ORDER "B A"; mark-good/mark-bad: the counters). Each slot's
/vmlinuz has its own size, so U-Boot's "N bytes read" shows which slot it really loaded from; it
is not a kernel, so booti fails and the script resets (QEMU exits: -no-reboot).

One difference with the Pi, said here: the Pi's U-Boot (rpi_arm64) keeps its whole environment
in uboot.env on the FAT, and `saveenv` writes it there. QEMU's U-Boot keeps it in a flash whose
writes time out under QEMU 7.2, so the test's own boot.scr imports the BOOT_ variables from
uboot.env on the FAT and sets `rauc_saveenv` to write them back there, then sources the real
script; boot.cmd runs `rauc_saveenv` instead of `saveenv` when it is set.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.images.harness import IMAGES

pytestmark = pytest.mark.timeout(120)

UBOOT = Path("/usr/lib/u-boot/qemu_arm64/u-boot.bin")
# `env export -c` checksums U-Boot's own CONFIG_ENV_SIZE, 0x40000 for qemu_arm64 (the Pi's
# rpi_arm64: 0x4000, as in images/rauc/fw_env.config), so the test's uboot.env is that size.
ENV_SIZE = 0x40000
SECTOR = 512
LAYOUT = {"fat": (2048, 8192), "A": (10240, 8192), "B": (18432, 8192)}  # start, sectors
KERNEL_SIZE = {"A": 1111, "B": 2222}

# The test's entry (what distro boot finds on virtio 0:1): the BOOT_ variables from the FAT's
# uboot.env in, a way to write them back, then the image's own script.
ENTRY = """\
setenv rauc_envaddr 0x41000000
if load virtio 0:1 ${rauc_envaddr} uboot.env; then
  env import -c ${rauc_envaddr} 0x40000 BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT
fi
setenv rauc_saveenv 'env export -c ${rauc_envaddr} 0x40000 BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT; \
save virtio 0:1 ${rauc_envaddr} uboot.env 0x40000'
load virtio 0:1 0x42000000 batigate.scr
source 0x42000000
"""


def tool(name: str) -> str:
    found = shutil.which(name) or next((str(p) for d in ("/usr/sbin", "/sbin")
                                        if (p := Path(d, name)).exists()), None)
    if found is None or not UBOOT.exists():
        raise RuntimeError(f"{name} or {UBOOT} missing: run images/host-setup.sh (as root)")
    return found


def run(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=True, capture_output=True, text=True, timeout=60,
                          **kw)  # type: ignore[call-overload]


class Disk:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.path = home / "disk.img"
        self.fat = home / "fat.img"
        (home / "entry.cmd").write_text(ENTRY)
        run(tool("mkimage"), "-A", "arm64", "-T", "script", "-C", "none",
            "-d", str(IMAGES / "rauc/boot.cmd"), str(home / "batigate.scr"))
        run(tool("mkimage"), "-A", "arm64", "-T", "script", "-C", "none",
            "-d", str(home / "entry.cmd"), str(home / "boot.scr"))
        run(tool("mkfs.vfat"), "-C", str(self.fat), str(LAYOUT["fat"][1] * SECTOR // 1024))
        # The technician's extra kernel arguments, read by boot.cmd from the FAT.
        (home / "batigate-bootargs.txt").write_text("rauc_extra_args=console=ttyAMA0 quiet\n")
        run(tool("mcopy"), "-i", str(self.fat), str(home / "boot.scr"),
            str(home / "batigate.scr"), str(home / "batigate-bootargs.txt"), "::")
        with self.path.open("wb") as disk:
            disk.truncate(16 * 2**20)
        table = "label: dos\nlabel-id: 0xba716a7e\n" + "".join(
            f"start={start}, size={size}, type={'c, bootable' if name == 'fat' else '83'}\n"
            for name, (start, size) in LAYOUT.items())
        run(tool("sfdisk"), "-q", str(self.path), input=table)
        self.put(self.fat, LAYOUT["fat"][0])
        for slot, size in KERNEL_SIZE.items():
            root = home / f"root{slot}"
            root.mkdir()
            (root / "vmlinuz").write_bytes(b"\0" * size)
            (root / "initrd.img").write_bytes(b"initrd")
            image = home / f"slot{slot}.img"
            run(tool("mkfs.ext4"), "-q", "-d", str(root), str(image),
                f"{LAYOUT[slot][1] * SECTOR // 1024}K")
            self.put(image, LAYOUT[slot][0])

    def put(self, image: Path, start: int) -> None:
        run("dd", f"if={image}", f"of={self.path}", f"bs={SECTOR}", f"seek={start}",
            "conv=notrunc", "status=none")

    def take_fat(self) -> None:
        run("dd", f"if={self.path}", f"of={self.fat}", f"bs={SECTOR}",
            f"skip={LAYOUT['fat'][0]}", f"count={LAYOUT['fat'][1]}", "status=none")

    def env(self) -> dict[str, str]:
        """U-Boot's saved variables, read from the FAT's uboot.env by fw_printenv."""
        self.take_fat()
        copy = self.home / "uboot.env"
        copy.unlink(missing_ok=True)
        run(tool("mcopy"), "-i", str(self.fat), "::uboot.env", str(copy))
        out = run(tool("fw_printenv"), "-c", str(self.fw_config())).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def set_env(self, **values: str) -> None:
        """What RAUC does on the gateway: fw_setenv on the FAT's uboot.env."""
        self.env()
        script = self.home / "fw_setenv.txt"
        script.write_text("".join(f"{k}={v}\n" for k, v in values.items()))  # libubootenv 0.3
        run(tool("fw_setenv"), "-c", str(self.fw_config()), "--script", str(script))
        run(tool("mcopy"), "-o", "-i", str(self.fat), str(self.home / "uboot.env"), "::uboot.env")
        self.put(self.fat, LAYOUT["fat"][0])

    def fw_config(self) -> Path:
        path = self.home / "fw_env.config"
        path.write_text(f"{self.home / 'uboot.env'} 0x0 {ENV_SIZE:#x}\n")
        return path

    def boot(self) -> str:
        """Power on once; U-Boot's console until the script resets."""
        ran = subprocess.run(
            [tool("qemu-system-aarch64"), "-M", "virt", "-cpu", "cortex-a53", "-m", "256",
             "-nographic", "-no-reboot", "-nic", "none", "-bios", str(UBOOT),
             "-drive", f"if=none,id=sd,format=raw,file={self.path}",
             "-device", "virtio-blk-device,drive=sd"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=40)
        return ran.stdout + ran.stderr


def chosen(console: str) -> str:
    lines = [line for line in console.splitlines() if line.startswith("batigate-boot: slot ")]
    assert lines, console
    return lines[0].split()[2]


def test_a_slot_without_attempts_left_makes_u_boot_start_the_other_one(tmp_path: Path) -> None:
    disk = Disk(tmp_path)

    console = disk.boot()  # the first power-on: no uboot.env yet, the defaults
    assert chosen(console) == "A", console
    assert f"{KERNEL_SIZE['A']} bytes read" in console  # slot A's /vmlinuz, from partition 2
    # cmdline.txt's arguments, slot A's PARTUUID, the technician's extra arguments from the FAT
    assert ("root=PARTUUID=ba716a7e-02 rw fsck.repair=yes net.ifnames=0 rootwait rauc.slot=A "
            "console=ttyAMA0 quiet") in console, console
    assert disk.env() == {"BOOT_ORDER": "A B", "BOOT_A_LEFT": "2", "BOOT_B_LEFT": "3"}

    # `rauc install` wrote B and put it first; B has used two of its three attempts already.
    disk.set_env(BOOT_ORDER="B A", BOOT_A_LEFT="3", BOOT_B_LEFT="1")
    console = disk.boot()
    assert chosen(console) == "B", console
    assert f"{KERNEL_SIZE['B']} bytes read" in console
    assert "root=PARTUUID=ba716a7e-03 rw fsck.repair=yes net.ifnames=0 rootwait rauc.slot=B" \
        in console, console
    assert disk.env()["BOOT_B_LEFT"] == "0"  # counted before the slot ran

    console = disk.boot()  # B never got to mark-good: no attempt left, U-Boot starts A
    assert chosen(console) == "A", console
    assert f"{KERNEL_SIZE['A']} bytes read" in console
    assert disk.env() == {"BOOT_ORDER": "B A", "BOOT_A_LEFT": "2", "BOOT_B_LEFT": "0"}


def test_with_both_slots_used_up_the_counters_start_again(tmp_path: Path) -> None:
    disk = Disk(tmp_path)
    disk.boot()
    disk.set_env(BOOT_ORDER="B A", BOOT_A_LEFT="0", BOOT_B_LEFT="0")
    console = disk.boot()
    assert "no slot has attempts left" in console, console
    assert "bytes read" not in console.split("no slot has attempts left")[1]
    assert disk.env() == {"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"}
    assert chosen(disk.boot()) == "B"
