#!/usr/bin/env bash
# wheels.sh ARCH OUTDIR: the batigate wheel built from this tree plus the wheels of its pinned
# runtime dependencies for the target (aarch64 or x86_64, CPython 3.11 = bookworm's python3).
# Downloaded on the host because pip inside the emulated chroot cannot reach the package index
# (the proxy's CA is not trusted there) and a build machine's view of PyPI is what we pin anyway.
set -euo pipefail
arch=$1 out=$2
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
python=${PYTHON:-$repo/.venv/bin/python}

rm -rf "$out" && mkdir -p "$out"
# A fixed timestamp inside the zip makes the wheel byte-identical for the same commit.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 1700000000)}
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
# Build from a clean copy so that a developer's build/ or egg-info never ends up in the wheel.
git -C "$repo" ls-files -z --cached --others --exclude-standard \
  | (cd "$repo" && xargs -0 tar -c --ignore-failed-read -f - 2>/dev/null) | tar -x -C "$build"
"$python" -m pip wheel -q --no-deps -w "$out" "$build"

# Only the runtime dependencies of the wheel, at the versions of requirements.lock.
# PIP_FIND_LINKS is cleared so a host-local wheel directory cannot change what gets pinned.
PIP_FIND_LINKS= "$python" -m pip download -q --only-binary=:all: --implementation cp \
  --python-version 3.11 --platform "manylinux2014_$arch" --platform "manylinux_2_28_$arch" \
  --platform "manylinux_2_17_$arch" -c "$repo/requirements.lock" -d "$out" "$out"/batigate-*.whl
ls "$out" > "$out/MANIFEST"
