#!/usr/bin/env bash
# rauc/pki.sh DIR: a test release CA and a signer it issued (EC P-256, PEM), for images built
# without RAUC_KEYRING. Kept if DIR already has them, so bundles of an earlier build still verify.
set -euo pipefail
dir=$1
[ -s "$dir/ca.pem" ] && [ -s "$dir/signer.pem" ] && exit 0
mkdir -p "$dir"
cd "$dir"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 3650 -subj "/CN=batigate test release CA" 2>/dev/null
openssl req "${ec[@]}" -keyout signer.key -out signer.csr -subj "/CN=batigate test release signer" 2>/dev/null
openssl x509 -req -in signer.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out signer.pem -days 3650 2>/dev/null
chmod 600 ca.key signer.key
echo "rauc/pki.sh: test release CA in $dir (not for production: set RAUC_KEYRING)"
