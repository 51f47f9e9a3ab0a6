"""Build the test root file systems with the image's own scripts and boot them with systemd-nspawn.

The root file systems are cached under build/images/ and rebuilt only when an input changes: the
scripts and files under images/, and the wheels (built from the working tree every session).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"
BUILD = REPO / "build" / "images"
TOOLS = ("mmdebstrap", "systemd-nspawn", "systemd-analyze")


def require_tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing or os.geteuid() != 0:
        raise RuntimeError(f"the image tests need root and {', '.join(TOOLS)} "
                           f"(missing: {missing or 'root'}): run `images/host-setup.sh` first")


def _digest(paths: list[Path]) -> str:
    sha = hashlib.sha256()
    for path in sorted(paths):
        if path.is_file() and "__pycache__" not in path.parts:
            sha.update(str(path.relative_to(REPO)).encode())
            sha.update(path.read_bytes())
    return sha.hexdigest()


def wheels(arch: str) -> Path:
    out = BUILD / f"wheels-{arch}"
    subprocess.run([str(IMAGES / "wheels.sh"), arch, str(out)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    return out


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    """Several pytest sessions share the work tree (and the machine): one build at a time."""
    BUILD.mkdir(parents=True, exist_ok=True)
    with open(BUILD / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def rootfs(profile: str, arch: str) -> Path:
    """The root file system of `profile` for the current tree, built if anything changed."""
    with _build_lock():
        return _rootfs(profile, arch)


def _rootfs(profile: str, arch: str) -> Path:
    wheel_dir = wheels(arch)
    key = _digest(list(IMAGES.rglob("*")) + list(wheel_dir.glob("*.whl")))
    out = BUILD / f"rootfs-{profile}"
    stamp = BUILD / f"rootfs-{profile}.key"
    if out.is_dir() and stamp.exists() and stamp.read_text() == key:
        return out
    stamp.unlink(missing_ok=True)
    log = BUILD / f"rootfs-{profile}.log"
    with log.open("w") as handle:
        result = subprocess.run([str(IMAGES / "rootfs.sh"), profile, str(wheel_dir), str(out)],
                                stdout=handle, stderr=subprocess.STDOUT, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"rootfs.sh {profile} failed ({result.returncode}); see {log}:\n"
                           + log.read_text()[-3000:])
    stamp.write_text(key)
    return out


@dataclass
class Boot:
    returncode: int
    console: str


async def boot(root: Path, *, binds: dict[Path, str], ro_binds: dict[Path, str],
               wants: list[str], timeout: float = 120) -> Boot:
    """Boot `root` as a container until it powers itself off.

    --volatile=overlay keeps the cached tree pristine (every write goes to a tmpfs);
    --register=no --keep-unit because the host's PID 1 is not systemd (no machined, no bus);
    --console=read-only is the one console mode that shows the services' console output.
    The host network is shared, so the agent inside reaches a broker on the host's 127.0.0.1.
    """
    args = ["systemd-nspawn", "-q", "-D", str(root), "--volatile=overlay", "--boot",
            "--register=no", "--keep-unit", "--console=read-only"]
    args += [f"--bind={host}:{inside}" for host, inside in binds.items()]
    args += [f"--bind-ro={host}:{inside}" for host, inside in ro_binds.items()]
    args += [f"systemd.wants={unit}" for unit in wants]
    proc = await asyncio.create_subprocess_exec(*args, stdin=subprocess.DEVNULL,
                                                stdout=subprocess.PIPE,
                                                stderr=subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        raise AssertionError(f"the container did not power off in {timeout}s:\n"
                             + out.decode(errors="replace")[-4000:]) from None
    return Boot(proc.returncode or 0, out.decode(errors="replace"))


# A oneshot unit that waits for the agent, samples the watchdog twice, writes what systemd says
# to /results and powers the container off (SIGRTMIN+4 to PID 1 = poweroff, no bus needed).
PROBE_UNIT = """\
[Unit]
Description=batigate boot-test probe
After=batigate.service batigate-firstboot.service

[Service]
Type=oneshot
StandardOutput=journal+console
ExecStart=/bin/sh /results/probe.sh
"""

PROBE_SCRIPT = """\
set -u
out=/results/probe.txt
for i in $(seq 100); do
  [ "$(systemctl show -P SubState batigate.service)" = running ] && break
  sleep 0.2
done
echo "wd_first=$(systemctl show -P WatchdogTimestampMonotonic batigate.service)" > $out
sleep {wait}
echo "wd_last=$(systemctl show -P WatchdogTimestampMonotonic batigate.service)" >> $out
systemctl show -p ActiveState,SubState,NRestarts,StatusText,WatchdogUSec,User batigate.service >> $out
echo "firstboot=$(systemctl show -P Result batigate-firstboot.service)" >> $out
echo "failed_units=$(systemctl list-units --state=failed --no-legend --plain | awk '{{print $1}}' | tr '\\n' ' ')" >> $out
echo "agent_user=$(stat -c %U /proc/"$(systemctl show -P MainPID batigate.service)")" >> $out
echo "etc=$(ls /etc/batigate | tr '\\n' ' ')" >> $out
findmnt -n -o TARGET,OPTIONS /var/lib/batigate | sed 's/^/mount=/' >> $out
journalctl -b --no-pager -o cat -u batigate-firstboot.service > /results/firstboot.journal
journalctl -b --no-pager -o cat -u batigate.service > /results/agent.journal
kill -s RTMIN+4 1
"""


def parse_probe(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
