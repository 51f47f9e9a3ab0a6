#!/usr/bin/env bash
# rootfs.sh PROFILE WHEELS OUT: a Debian bookworm root file system with the agent installed.
#   pi      arm64, Debian's linux-image-arm64 + raspi-firmware, fstab for the SD card layout
#   nspawn  amd64 (the host's arch, no emulation), no kernel: booted by systemd-nspawn in tests
#   verify  arm64, no kernel: the quick arm64 tree where the units are checked by the target's
#           own systemd-analyze
# OUT is a directory. Everything comes from Debian's repositories and the host-downloaded wheels.
set -euo pipefail
profile=$1 wheels=$(cd "$2" && pwd) out=$3
here=$(cd "$(dirname "$0")" && pwd)
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
repo=$(dirname "$here")
# Same commit, same mirror state -> same file times and the same package set.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 1700000000)}

common=systemd-sysv,udev,dbus,kmod,iproute2,e2fsprogs,ca-certificates,python3,python3-venv
common+=,systemd-timesyncd,systemd-resolved,netbase,less
case $profile in
  pi)     arch=arm64 include="$common,linux-image-arm64,raspi-firmware,initramfs-tools,dosfstools,fdisk"
          # The whole-system A/B update: RAUC and its D-Bus service, U-Boot as the boot chooser.
          include+=",rauc,rauc-service,u-boot-rpi,libubootenv-tool" ;;
  verify) arch=arm64 include="$common" ;;
  nspawn) arch=amd64 include="$common" ;;
  *) echo "rootfs.sh: unknown profile $profile (pi, nspawn, verify)" >&2; exit 2 ;;
esac

hooks=()
if [ "$profile" = pi ]; then
  # The initramfs is built by mkinitramfs under qemu-user: ~8 min each time. Installing the kernel
  # and then the other packages' triggers would build it twice, so update-initramfs is diverted to
  # a no-op during the install and run once in customize.sh.
  hooks+=(--essential-hook='chroot "$1" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs && printf "#!/bin/sh\nexit 0\n" > "$1/usr/sbin/update-initramfs" && chmod 755 "$1/usr/sbin/update-initramfs"')
fi

# PACKAGES_PIN=FILE: install exactly the package versions of a manifest written by an earlier
# build (its /opt/batigate/packages.txt, "name=version" per line). Each becomes an apt pin at
# priority 1001 (before the first download, so the essential set is pinned too), and customize.sh
# fails the build if what got installed differs from the manifest in any line. The versions must
# still be served by DEBIAN_MIRROR: deb.debian.org keeps only the current ones of each suite, so
# with it a pin mostly detects a changed package set; with a snapshot mirror it reproduces it.
if [ -n "${PACKAGES_PIN:-}" ]; then
  pin=$(realpath "$PACKAGES_PIN")
  prefs=$(mktemp)
  trap 'rm -f "$prefs"' EXIT
  awk -F= 'NF == 2 { print "Package: " $1 "\nPin: version " $2 "\nPin-Priority: 1001\n" }' \
    "$pin" > "$prefs"
  hooks+=(--setup-hook="mkdir -p \"\$1/etc/apt/preferences.d\" && cp $prefs \"\$1/etc/apt/preferences.d/batigate-pin\"")
  export BATIGATE_PACKAGES_PIN=$pin
fi

rm -rf "$out"
mkdir -p "$(dirname "$out")"
# raspi-firmware is in non-free-firmware; bookworm-security brings the kernel's security fixes.
BATIGATE_PROFILE=$profile BATIGATE_WHEELS=$wheels BATIGATE_IMAGES=$here \
mmdebstrap --quiet --variant=minbase --architectures="$arch" \
  --components=main,non-free-firmware --include="$include" \
  --aptopt='Acquire::Retries "3"' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  "${hooks[@]}" \
  --customize-hook="$here/customize.sh \"\$1\"" \
  bookworm "$out" \
  "deb $mirror bookworm main non-free-firmware" \
  "deb $mirror bookworm-updates main non-free-firmware" \
  "deb $security bookworm-security main non-free-firmware"
