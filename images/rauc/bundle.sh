#!/usr/bin/env bash
# rauc/bundle.sh IMG CERT KEY OUT [VERSION]: a signed RAUC bundle of root slot A of a built image,
# the artifact of a whole-system (A/B) update. The slot is taken from the image file itself (its
# partition 2, cut out as a sparse file), so the bundle holds exactly what `make image` tested.
# CERT/KEY: the release signing certificate and key (PEM; X.509, as RAUC's CMS signatures need).
# Format `verity`: the payload is checked block by block through dm-verity while it is written,
# against a root hash inside the signed manifest.
set -euo pipefail
img=$1 cert=$2 key=$3 out=$4
version=${5:-$(git -C "$(dirname "$0")" describe --always --dirty 2>/dev/null || echo unknown)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
read -r start size < <(sfdisk -J "$img" | python3 -c \
  "import json,sys; p=json.load(sys.stdin)['partitiontable']['partitions'][1]; print(p['start'], p['size'])")
mkdir "$work/bundle"
dd if="$img" of="$work/bundle/rootfs.ext4" bs=4M skip=$((start * 512)) count=$((size * 512)) \
  iflag=skip_bytes,count_bytes conv=sparse status=none
cat > "$work/bundle/manifest.raucm" <<MANIFEST
[update]
compatible=batigate-pi-arm64
version=$version

[bundle]
format=verity

[image.rootfs]
filename=rootfs.ext4
MANIFEST
rm -f "$out"
rauc bundle --cert="$cert" --key="$key" "$work/bundle" "$out"
echo "rauc bundle: $out ($(du -h --apparent-size "$out" | cut -f1)), version $version"
