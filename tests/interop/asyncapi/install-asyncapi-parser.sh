#!/usr/bin/env bash
# Install the AsyncAPI Initiative's own parser (npm @asyncapi/parser) for the interop test of
# asyncapi/asyncapi.yaml. Idempotent; goes to build/interop/asyncapi-parser (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/../../.."
dest=build/interop/asyncapi-parser
version=3.6.6
if grep -qs "\"version\": \"$version\"" "$dest/node_modules/@asyncapi/parser/package.json"; then
  exit 0
fi
command -v npm >/dev/null || { echo "install-asyncapi-parser: npm is needed" >&2; exit 1; }
mkdir -p "$dest"
npm install --prefix "$dest" --no-audit --no-fund --no-save --ignore-scripts \
  "@asyncapi/parser@$version" >"$dest/install.log" 2>&1 || { tail -30 "$dest/install.log" >&2; exit 1; }
