#!/usr/bin/env bash
# Install node-mbus (the npm package that bundles libmbus' C sources and builds them with
# node-gyp) for the libmbus interop tests: libmbus is not packaged for Debian bookworm.
# Idempotent; the build goes to build/interop/node-mbus (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/../../.."
dest=build/interop/node-mbus
version=2.2.6
if [ -f "$dest/node_modules/node-mbus/build/Release/mbus.node" ] \
   && grep -q "\"version\": \"$version\"" "$dest/node_modules/node-mbus/package.json"; then
  exit 0
fi
command -v npm >/dev/null || { echo "install-node-mbus: npm is needed (Node.js 20)" >&2; exit 1; }
mkdir -p "$dest"
# The package's install script runs node-gyp, which compiles libmbus and the binding (gcc).
npm install --prefix "$dest" --no-audit --no-fund --no-save --foreground-scripts \
  "node-mbus@$version" >"$dest/install.log" 2>&1 || { tail -30 "$dest/install.log" >&2; exit 1; }
[ -f "$dest/node_modules/node-mbus/build/Release/mbus.node" ] \
  || { echo "install-node-mbus: the libmbus binding was not built" >&2; tail -30 "$dest/install.log" >&2; exit 1; }
