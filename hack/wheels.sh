#!/usr/bin/env bash
# Download, on the host, every wheel the image installs, so the Docker build needs no index
# (containers here cannot reach PyPI). Output: ./wheels/ in the build context (gitignored):
#   *.whl            cp311 manylinux x86_64 (or pure-Python) wheels of the runtime
#                    dependencies in pyproject.toml, plus setuptools (the build backend the
#                    Dockerfile uses to build the package from source, offline)
#   constraints.txt  name==version of every wheel here; the Dockerfile pins to it
# The package itself is not built here: the Dockerfile builds it from the source in the build
# context (with setuptools from ./wheels/), so a stale wheel can never shadow the source and a
# source change does not invalidate the (slow) dependency layer.
# Re-runs are fast: the download is skipped while pyproject's dependencies and this script
# are unchanged (key in wheels/.key); --force re-resolves.
#
# Usage: hack/wheels.sh [--force]     Env: WHEELS_DIR, PYTHON (host interpreter with pip)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WHEELS_DIR="${WHEELS_DIR:-$repo/wheels}"
PYTHON="${PYTHON:-python3}"
force=0
[[ ${1:-} == --force ]] && force=1

log() { printf '[wheels %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# The target interpreter: the image's CPython 3.11 on glibc 2.36 (bookworm), x86_64.
target=(
  --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
  --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
  --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64
  --platform linux_x86_64 --platform any
  --only-binary=:all:
)
# The host's pip configuration may point --find-links at a local directory; use the index only.
export PIP_FIND_LINKS=""

requirements="$("$PYTHON" - "$repo/pyproject.toml" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)
print("\n".join(project["project"]["dependencies"]))
# The build backend, so the Dockerfile can build the package from source without an index.
print("\n".join(project["build-system"]["requires"]))
EOF
)"
key="$({ printf '%s\n' "$requirements"; cat "$0"; } | sha256sum | cut -c1-16)"

mkdir -p "$WHEELS_DIR"
if [[ $force == 0 && -f $WHEELS_DIR/.key && $(cat "$WHEELS_DIR/.key") == "$key" ]] \
  && ls "$WHEELS_DIR"/*.whl >/dev/null 2>&1; then
  log "dependency wheels up to date in $WHEELS_DIR ($(find "$WHEELS_DIR" -maxdepth 1 -name "*.whl" | wc -l) wheels)"
else
  log "downloading dependency wheels into $WHEELS_DIR"
  rm -f "$WHEELS_DIR"/*.whl "$WHEELS_DIR/constraints.txt" "$WHEELS_DIR/.key"
  printf '%s\n' "$requirements" >"$WHEELS_DIR/requirements.in"
  "$PYTHON" -m pip download --quiet --dest "$WHEELS_DIR" "${target[@]}" \
    -r "$WHEELS_DIR/requirements.in"
  # name==version for each wheel (wheel file names: name-version-...; names normalised).
  for whl in "$WHEELS_DIR"/*.whl; do
    base="$(basename "$whl")"
    IFS=- read -r name version _ <<<"$base"
    printf '%s==%s\n' "$(tr '_.' '--' <<<"$name" | tr '[:upper:]' '[:lower:]')" "$version"
  done | sort >"$WHEELS_DIR/constraints.txt"
  printf '%s\n' "$key" >"$WHEELS_DIR/.key"
  log "$(wc -l <"$WHEELS_DIR/constraints.txt") wheels, $(du -sh "$WHEELS_DIR" | cut -f1)"
fi

