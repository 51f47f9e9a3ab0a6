#!/usr/bin/env bash
# A Sparkplug B decoder we did not write, for tests/interop/sparkplug: PyPI pysparkplug (Google's
# protobuf runtime and its own generated sparkplug_b_pb2). It needs paho-mqtt<2, which our aiomqtt
# cannot share, so it gets a venv of its own under build/interop/ (ignored by git). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../../.."
dest=build/interop/pysparkplug
version=0.6.1
if "$dest/bin/python" -c "import pysparkplug, sys; sys.exit(pysparkplug.__version__ != '$version')" 2>/dev/null; then
  exit 0
fi
rm -rf "$dest"
python3 -m venv "$dest"
"$dest/bin/pip" install -q --disable-pip-version-check "pysparkplug==$version" "paho-mqtt==1.6.1" \
  >"$dest.install.log" 2>&1 || { tail -30 "$dest.install.log" >&2; exit 1; }
