#!/usr/bin/env bash
# mmdebstrap customize hook (called by rootfs.sh): $1 is the new root file system.
# What can run natively on the host does (systemd-sysusers --root, systemctl --root): emulated
# arm64 processes are 10-50x slower. Only Python, pip and mkinitramfs run inside the chroot.
set -euo pipefail
root=$1
profile=${BATIGATE_PROFILE:?} wheels=${BATIGATE_WHEELS:?} images=${BATIGATE_IMAGES:?}
# The host's pip/proxy variables (PIP_FIND_LINKS, PIP_INDEX_URL...) must not leak into the target.
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 "$@"; }

# Units, journald/timesyncd/network settings, sysusers, udev rule.
cp -r --preserve=mode "$images/files/." "$root/"
systemd-sysusers --root="$root"

# The agent in its own venv from the wheels only (--no-index: no package index is reachable from
# the chroot, and the image must contain exactly the pinned set).
mkdir -p "$root/tmp/batigate-wheels"
cp "$wheels"/*.whl "$root/tmp/batigate-wheels/"
in_root python3 -m venv /opt/batigate/venv
in_root /opt/batigate/venv/bin/pip install --quiet --no-index --disable-pip-version-check \
  --find-links /tmp/batigate-wheels batigate
rm -rf "$root/tmp/batigate-wheels"
install -m 644 "$images/README.md" "$root/opt/batigate/README.md"
cp "$wheels/MANIFEST" "$root/opt/batigate/wheels.txt"
ln -sf /opt/batigate/venv/bin/batigate "$root/usr/local/bin/batigate"

# Persistent data lives on the data partition (/data), bind-mounted where the agent and journald
# expect it, so that both root slots (A/B) share config, outbox and logs. genimage turns the
# image's /data tree into the data partition.
# install -o/-g would look the names up on the host: take the ids from the target's own files.
id_of() { awk -F: -v n="$2" '$1 == n { print $3 }' "$root/etc/$1"; }
agent_uid=$(id_of passwd batigate) agent_gid=$(id_of group batigate)
journal_gid=$(id_of group systemd-journal)
install -d -m 755 "$root/data" "$root/data/batigate"
install -d -m 750 -o "$agent_uid" -g "$agent_gid" "$root/data/batigate/etc" "$root/data/batigate/lib"
install -d -m 2755 -g "$journal_gid" "$root/data/journal"
install -d -m 750 "$root/etc/batigate" "$root/var/lib/batigate"
install -d -m 2755 -g "$journal_gid" "$root/var/log/journal"
{
  echo "# <what> <where> <type> <options> <dump> <pass>"
  if [ "$profile" = pi ]; then
    # The root slot is mounted by the initramfs from cmdline.txt (root=PARTUUID=...-02 or -03).
    # umask=0077: keys a technician drops on the FAT are readable by root only.
    echo "LABEL=RASPIFIRM /boot/firmware vfat noatime,umask=0077,errors=remount-ro 0 2"
    # noatime: no write per read; commit=60: fewer journal commits on the SD card (the outbox
    # itself decides what must be durable with its own fsyncs).
    echo "LABEL=data /data ext4 noatime,commit=60,errors=remount-ro 0 2"
  fi
  echo "/data/batigate/etc /etc/batigate none bind,x-systemd.requires-mounts-for=/data 0 0"
  echo "/data/batigate/lib /var/lib/batigate none bind,x-systemd.requires-mounts-for=/data 0 0"
  echo "/data/journal /var/log/journal none bind,x-systemd.requires-mounts-for=/data 0 0"
} > "$root/etc/fstab"
if [ "$profile" != pi ]; then
  # The FAT drop directory exists as a plain directory where there is no SD card.
  install -d -m 700 "$root/boot/firmware"
fi

echo batigate > "$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 batigate\n::1 localhost ip6-localhost ip6-loopback\n' \
  > "$root/etc/hosts"
ln -sf /run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
systemctl --root="$root" enable batigate.service batigate-firstboot.service \
  systemd-networkd.service systemd-resolved.service systemd-timesyncd.service >/dev/null
# No getty/login on the HDMI console by default: root is locked and there is no other user.
# The console shows the boot and first-boot messages; technicians use the FAT drop and MQTT.

if [ "$profile" = pi ]; then
  # raspi-firmware writes config.txt and cmdline.txt from this file when the initramfs is built.
  # Slot A's partition; an A/B switch rewrites cmdline.txt (README, "Updates").
  # CMA=0: headless, no vc4 (and a cma= on a Pi 4 can stop it from booting).
  cat > "$root/etc/default/raspi-firmware" <<CONF
ROOTPART=PARTUUID=${DISK_SIGNATURE:-ba716a7e}-02
CONSOLES="ttyS1,115200 tty0"
CMA=0
CONF
  systemctl --root="$root" enable batigate-growdata.service >/dev/null

  # Whole-system A/B update (images/README.md, "Whole-system A/B update with RAUC"): the Pi
  # firmware starts U-Boot (kernel=u-boot.bin, appended to config.txt by raspi-firmware from
  # raspi-firmware-custom), whose boot.scr chooses slot A or B and boots that slot's own /vmlinuz
  # and /initrd.img. RAUC: system.conf, the release CA as keyring, U-Boot's environment on the FAT.
  rauc=$images/rauc
  install -D -m 644 "$rauc/system.conf" "$root/etc/rauc/system.conf"
  install -D -m 644 "${BATIGATE_RAUC_KEYRING:?image.sh sets it}" "$root/etc/rauc/keyring.pem"
  install -m 644 "$rauc/fw_env.config" "$root/etc/fw_env.config"
  install -D -m 644 "$rauc/batigate-rauc.conf" "$root/etc/dbus-1/system.d/batigate-rauc.conf"
  install -m 644 "$rauc/batigate-reboot.path" "$rauc/batigate-reboot.service" \
    "$rauc/batigate-slot-deadline.service" "$rauc/batigate-slot-deadline.timer" \
    "$root/etc/systemd/system/"
  install -m 755 "$rauc/batigate-slot-deadline" "$root/usr/local/sbin/batigate-slot-deadline"
  install -d -m 700 "$root/data/rauc"
  systemctl --root="$root" enable batigate-reboot.path batigate-slot-deadline.timer >/dev/null
  install -m 644 "$root/usr/lib/u-boot/rpi_arm64/u-boot.bin" "$root/boot/firmware/u-boot.bin"
  mkimage -A arm64 -T script -C none -d "$rauc/boot.cmd" "$root/boot/firmware/boot.scr" >/dev/null
  printf '# U-Boot chooses the root slot (images/rauc/boot.cmd)\nkernel=u-boot.bin\n' \
    > "$root/etc/default/raspi-firmware-custom"
  rm -f "$root/usr/sbin/update-initramfs"
  chroot "$root" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs
  in_root update-initramfs -c -k all
fi

# Checks inside the target with the target's own tools (arm64 under qemu-user for pi/verify).
in_root /opt/batigate/venv/bin/batigate --version
in_root /opt/batigate/venv/bin/python -c "import agent.runtime.sdnotify, agent.lifecycle.firstboot, cryptography.x509.verification, pydantic_core, yaml, psutil"
in_root systemd-analyze verify /etc/systemd/system/batigate.service \
  /etc/systemd/system/batigate-firstboot.service /etc/systemd/system/batigate-retry.timer \
  /etc/systemd/system/batigate-retry.service /etc/systemd/system/batigate-growdata.service \
  > "$root/opt/batigate/verify.txt" 2>&1 || true
in_root systemd-analyze security --offline=yes --no-pager batigate.service \
  > "$root/opt/batigate/security.txt" 2>&1 || true

# The exact package set, for the build record and for PACKAGES_PIN (rootfs.sh).
chroot "$root" dpkg-query -W -f '${Package}=${Version}\n' | LC_ALL=C sort > "$root/opt/batigate/packages.txt"
if [ -n "${BATIGATE_PACKAGES_PIN:-}" ]; then
  rm -f "$root/etc/apt/preferences.d/batigate-pin"
  if ! LC_ALL=C sort "$BATIGATE_PACKAGES_PIN" | diff -u - "$root/opt/batigate/packages.txt" >&2; then
    echo "customize.sh: the installed packages differ from PACKAGES_PIN=$BATIGATE_PACKAGES_PIN (above)" >&2
    exit 1
  fi
fi

# Machine identity is made at first boot: every gateway must differ.
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id" "$root/var/lib/systemd/random-seed"
