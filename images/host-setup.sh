#!/usr/bin/env bash
# Install the host tools the image build and the boot test need, and make arm64 binaries run
# through qemu-user. Idempotent; run as root. Every tool comes from Debian's repositories.
set -euo pipefail

packages=(mmdebstrap qemu-user-static binfmt-support arch-test systemd-container genimage
          mtools dosfstools e2fsprogs fdisk mosquitto
          qemu-system-arm socat       # make image-test: boots the image (qemu-system-aarch64)
          rauc squashfs-tools         # images/rauc/bundle.sh: the whole-system update bundle
          u-boot-tools libubootenv-tool dbus-daemon  # boot.scr, tests/commands/test_update_rootfs
          u-boot-qemu                 # tests/images/test_boot_chooser.py: real U-Boot, qemu virt
          gcc pkg-config libmodbus-dev  # the libmodbus slave of tests/interop/modbus
          tmux chromium curl)  # tests/display (a real terminal), tests/local (page and API)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# PID 1 of these CI machines is not systemd, so nobody mounts binfmt_misc; without it the
# qemu-aarch64 handler cannot be registered and `chroot` into an arm64 tree fails with ENOEXEC.
if ! mountpoint -q /proc/sys/fs/binfmt_misc; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
# The package registered the handler only if binfmt_misc was mounted at install time.
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
arch-test arm64 >/dev/null
