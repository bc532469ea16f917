#!/usr/bin/env bash
# Download, on the host, every wheel the image installs, so the Docker build needs no index
# (containers here cannot reach PyPI). Output: ./wheels/ in the build context (gitignored):
#   *.whl            cp311 manylinux x86_64 (or pure-Python) wheels of the runtime
#                    dependencies in pyproject.toml, plus setuptools (the build backend the
#                    Dockerfile uses to build the package from source, offline), plus the
#                    extra packages, if any, resolved together with them
#   constraints.txt  name==version of every wheel here; the Dockerfile pins to it
# The package itself is not built here: the Dockerfile builds it from the source in the build
# context (with setuptools from ./wheels/), so a stale wheel can never shadow the source and a
# source change does not invalidate the (slow) dependency layer.
# Each set of wheels is cached under ~/.cache/scorer/wheels/<key>, the key hashing the
# requirements (pyproject's dependencies, the build backend, the extras), the target platform
# and this script; ./wheels/ is then linked from that set (seconds), so switching between the
# lean image and a variant with extras downloads nothing. --force re-resolves (new releases).
#
# Usage: hack/wheels.sh [--force] [--extra "PKG..."]
# Env:   WHEELS_DIR (default ./wheels), PYTHON (host interpreter with pip)
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

WHEELS_DIR="${WHEELS_DIR:-$REPO_DIR/wheels}"
PYTHON="${PYTHON:-python3}"
force=0
extras=()
while (($#)); do
  case "$1" in
    --force) force=1; shift ;;
    --extra) read -ra words <<<"${2?--extra needs a list of packages}"; extras+=("${words[@]}"); shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

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

requirements="$("$PYTHON" - "$REPO_DIR/pyproject.toml" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)
print("\n".join(project["project"]["dependencies"]))
# The build backend, so the Dockerfile can build the package from source without an index.
print("\n".join(project["build-system"]["requires"]))
EOF
)"
if ((${#extras[@]})); then requirements+=$'\n'"$(printf '%s\n' "${extras[@]}")"; fi
key="$(cache_key "$requirements" "${target[*]}" -f "${BASH_SOURCE[0]}")"
cache="$SCORER_CACHE/wheels/$key"
have_wheels() { compgen -G "$1/*.whl" >/dev/null; }
count() { find "$1" -maxdepth 1 -name '*.whl' | wc -l; }

mkdir -p "$WHEELS_DIR"
if [[ $force == 0 && -f $WHEELS_DIR/.key && $(cat "$WHEELS_DIR/.key") == "$key" ]] && have_wheels "$WHEELS_DIR"; then
  log "wheels up to date in $WHEELS_DIR ($(count "$WHEELS_DIR") wheels, key $key)"
  exit 0
fi

if [[ $force == 1 || ! -f $cache/constraints.txt ]]; then
  log "downloading wheels into $cache${extras[*]:+ (extra: ${extras[*]})}"
  tmp="$cache.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  on_exit rm -rf "$tmp"
  printf '%s\n' "$requirements" >"$tmp/requirements.in"
  "$PYTHON" -m pip download --quiet --dest "$tmp" "${target[@]}" -r "$tmp/requirements.in"
  # name==version for each wheel (wheel file names: name-version-...; names normalised).
  for whl in "$tmp"/*.whl; do
    base="$(basename "$whl")"
    IFS=- read -r name version _ <<<"$base"
    printf '%s==%s\n' "$(tr '_.' '--' <<<"$name" | tr '[:upper:]' '[:lower:]')" "$version"
  done | sort >"$tmp/constraints.txt"
  rm -rf "$cache"
  mv "$tmp" "$cache"
  log "$(wc -l <"$cache/constraints.txt") wheels, $(du -sh "$cache" | cut -f1)"
fi

# ./wheels/ := that set (hard links when the cache is on the same file system).
rm -f "$WHEELS_DIR"/*.whl "$WHEELS_DIR/constraints.txt" "$WHEELS_DIR/requirements.in" "$WHEELS_DIR/.key"
cp -l "$cache"/* "$WHEELS_DIR/" 2>/dev/null || cp "$cache"/* "$WHEELS_DIR/"
printf '%s\n' "$key" >"$WHEELS_DIR/.key"
log "$WHEELS_DIR: $(count "$WHEELS_DIR") wheels from $cache"
