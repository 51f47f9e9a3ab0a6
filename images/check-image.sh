#!/usr/bin/env bash
# check-image.sh IMG: inspect a built image without mounting it (no root, no loop device):
# partition table, the FAT's boot files, and the agent's files inside root slot A.
set -euo pipefail
img=$1
fail() { echo "check-image: FAIL: $*" >&2; exit 1; }
table=$(sfdisk -d "$img")
echo "$table"
grep -q 'label-id: 0xba716a7e' <<<"$table" || fail "disk signature (PARTUUIDs in cmdline.txt)"
[ "$(grep -c "^$img[0-9]" <<<"$table")" = 4 ] || fail "expected 4 partitions"
# offsets of partitions in bytes, from sfdisk's sectors
start() { sfdisk -J "$img" | python3 -c "import json,sys; p=json.load(sys.stdin)['partitiontable']['partitions'][$1]; print(p['start']*512)"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# FAT: mtools reads at an offset with the @@ syntax
fat="$img@@$(start 0)"
for f in config.txt cmdline.txt start4.elf bootcode.bin bcm2711-rpi-4-b.dtb bcm2837-rpi-3-b.dtb; do
  mdir -i "$fat" "::$f" >/dev/null || fail "FAT lacks $f"
done
mtype -i "$fat" ::cmdline.txt | grep -q 'root=PARTUUID=ba716a7e-02' || fail "cmdline.txt root="
# The boot chooser of the A/B update: the firmware starts U-Boot, which sources boot.scr.
for f in u-boot.bin boot.scr; do mdir -i "$fat" "::$f" >/dev/null || fail "FAT lacks $f"; done
mtype -i "$fat" ::config.txt | grep -q '^kernel=u-boot.bin' || fail "config.txt: kernel=u-boot.bin"
# ext4 root slot A and data: cut them out (sparse copies) and read them with debugfs
dd if="$img" of="$tmp/rootA" bs=4M skip="$(( $(start 1) / 4194304 ))" count=300 conv=sparse status=none
for f in /opt/batigate/venv/bin/batigate /etc/systemd/system/batigate.service /etc/fstab \
         /etc/rauc/system.conf /etc/rauc/keyring.pem /etc/fw_env.config /usr/bin/rauc \
         /usr/bin/fw_setenv /vmlinuz /initrd.img /etc/systemd/system/batigate-reboot.path; do
  debugfs -R "stat $f" "$tmp/rootA" 2>/dev/null | grep -q Inode: || fail "rootA lacks $f"
done
debugfs -R "cat /etc/fstab" "$tmp/rootA" 2>/dev/null | grep -q 'LABEL=data /data ext4 noatime' \
  || fail "fstab: data partition noatime"
dd if="$img" of="$tmp/data" bs=4M skip="$(( $(start 3) / 4194304 ))" count=128 conv=sparse status=none
debugfs -R "ls -l /batigate" "$tmp/data" 2>/dev/null | grep -q ' etc' || fail "data lacks batigate/etc"
echo "check-image: OK $img"
