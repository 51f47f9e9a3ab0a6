#!/usr/bin/env bash
# image.sh [OUTDIR]: the flashable Raspberry Pi 3/4 image (arm64), from Debian's repositories and
# the host-downloaded aarch64 wheels. Output: batigate-pi-arm64.img (+ .xz, .sha256) in OUTDIR.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
out=$(realpath -m "${1:-$repo/build/images}")
mkdir -p "$out"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 1700000000)}
start=$(date +%s)

"$here/host-setup.sh"
# The RAUC keyring (the release CA that signs whole-system bundles): RAUC_KEYRING=ca.pem for a
# real release; otherwise a CA made here for tests, its key kept in OUTDIR/rauc-pki, never in
# the image (images/rauc/bundle.sh signs with its signer.pem/signer.key).
if [ -z "${RAUC_KEYRING:-}" ]; then
  "$here/rauc/pki.sh" "$out/rauc-pki"
  RAUC_KEYRING=$out/rauc-pki/ca.pem
fi
export BATIGATE_RAUC_KEYRING=$(realpath "$RAUC_KEYRING")
"$here/wheels.sh" aarch64 "$out/wheels-aarch64"
# REUSE_ROOTFS=1 skips the slow part (mkinitramfs under emulation) when only the layout changed.
if [ "${REUSE_ROOTFS:-0}" != 1 ] || [ ! -d "$out/rootfs-pi" ]; then
  "$here/rootfs.sh" pi "$out/wheels-aarch64" "$out/rootfs-pi"
fi
test -f "$out/rootfs-pi/boot/firmware/cmdline.txt"   # raspi-firmware populated the FAT tree

# genimage needs its own empty temp and output dirs; it works on plain files (no loop devices).
rm -rf "$out/genimage-tmp" "$out/genimage-out"
mkdir -p "$out/genimage-out"
genimage --config "$here/genimage.cfg" --rootpath "$out/rootfs-pi" \
  --tmppath "$out/genimage-tmp" --inputpath "$out/genimage-out" --outputpath "$out/genimage-out"
mv "$out/genimage-out/batigate-pi-arm64.img" "$out/"
rm -rf "$out/genimage-tmp" "$out/genimage-out"

cp "$out/rootfs-pi/opt/batigate/packages.txt" "$out/batigate-pi-arm64.packages"

# xz -T0: the 3 GB image is mostly empty ext4 and compresses to a small download.
xz -T0 -6 -k -f "$out/batigate-pi-arm64.img"
chmod 644 "$out/batigate-pi-arm64.img.xz"
(cd "$out" && sha256sum batigate-pi-arm64.img batigate-pi-arm64.img.xz > batigate-pi-arm64.sha256)
end=$(date +%s)
{
  echo "built:      $(date -u -d "@$end" +%FT%TZ) in $((end - start)) s"
  echo "image:      $(du -h --apparent-size "$out/batigate-pi-arm64.img" | cut -f1) ($(du -h "$out/batigate-pi-arm64.img" | cut -f1) on disk)"
  echo "compressed: $(du -h "$out/batigate-pi-arm64.img.xz" | cut -f1)"
  echo "rootfs:     $(du -sh --exclude=./data --exclude=./boot/firmware "$out/rootfs-pi" | cut -f1)"
  echo "packages:   $(wc -l < "$out/batigate-pi-arm64.packages") Debian packages, versions in batigate-pi-arm64.packages${PACKAGES_PIN:+ (pinned by $PACKAGES_PIN)}"
  echo "security:   $(grep -o 'Overall exposure level.*' "$out/rootfs-pi/opt/batigate/security.txt")"
  cat "$out/batigate-pi-arm64.sha256"
} | tee "$out/batigate-pi-arm64.txt"
