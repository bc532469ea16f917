#!/usr/bin/env bash
# Make a local stand-in for python:3.11-slim-bookworm when no registry can be reached.
#
# debootstrap (minbase) + Debian's python3.11, python3-venv, ca-certificates and libgomp1
# (OpenMP runtime for xgboost), `python`/`python3` on PATH at /usr/local/bin like the official
# image, then `docker import` under exactly the official tag, so the Dockerfile's
# `FROM python:3.11-slim-bookworm` resolves locally and nothing is pulled.
# A second image, the same rootfs plus binutils (`strip`) and a C compiler, is imported as
# scorer.local/python-build:3.11-slim-bookworm for the Dockerfile's builder stage, which
# strips the venv's extension modules and compiles the package's C walk (the official image
# would apt-get them instead).
#
# The rootfs tarballs are cached under ~/.cache/scorer/python-base-image/ by a key (suite,
# packages, mirrors, this script and the debootstrap helper), so a re-run only re-imports
# them (seconds). The images carry that key as the label io.scorer.cache-key: an image
# imported by an older version of this script (another key, or the former label
# io.scorer.base-image.key) is replaced; an image of that tag that this script did not make
# (a pulled official image) is left alone.
#
# Usage: hack/python-base-image.sh [--force] [--refresh] [--rootfs-only]
#   --force        re-import even if the tags are current (the cached tarballs are reused)
#   --refresh      rebuild the rootfs too (picks up Debian security updates), then re-import
#   --rootfs-only  build/cache the rootfs tarballs, do not touch docker
# Env: BASE_IMAGE_TAG, BUILD_IMAGE_TAG, DEBIAN_MIRROR, SECURITY_MIRROR, SCORER_CACHE.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BASE_IMAGE_TAG="${BASE_IMAGE_TAG:-python:3.11-slim-bookworm}"
BUILD_IMAGE_TAG="${BUILD_IMAGE_TAG:-scorer.local/python-build:3.11-slim-bookworm}"
BUILD_PACKAGES="binutils gcc libc6-dev"
SECURITY_MIRROR="${SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
PACKAGES="python3.11,python3-venv,ca-certificates,libgomp1"
CACHE_DIR="$SCORER_CACHE/python-base-image"

force=0
refresh=0
rootfs_only=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --refresh) refresh=1; force=1 ;;
    --rootfs-only) rootfs_only=1 ;;
    -h | --help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

key="$(cache_key "$DEBIAN_SUITE" "$PACKAGES" "$BUILD_PACKAGES" "$DEBIAN_MIRROR" "$SECURITY_MIRROR" \
  -f "${BASH_SOURCE[0]}" -F debootstrap_rootfs)"
tarball="$CACHE_DIR/rootfs-$DEBIAN_SUITE-$key.tar"
build_tarball="$CACHE_DIR/rootfs-build-$DEBIAN_SUITE-$key.tar"

# 0: absent or made by another version of this script; 1: current; 2: not ours (leave it).
image_state() {
  local current legacy
  docker image inspect "$1" >/dev/null 2>&1 || { echo 0; return; }
  current="$(image_key "$1")"
  legacy="$(docker image inspect --format '{{ index .Config.Labels "io.scorer.base-image.key" }}' "$1")"
  if [[ $current == "$key" ]]; then
    echo 1
  elif [[ -n $current || $legacy != "<no value>" ]]; then
    echo 0
  else
    echo 2
  fi
}

if [[ $rootfs_only == 0 && $force == 0 ]]; then
  base_state="$(image_state "$BASE_IMAGE_TAG")"
  if [[ $base_state == 2 ]]; then
    log "$BASE_IMAGE_TAG exists and was not made here (a pulled image?): leaving it and $BUILD_IMAGE_TAG alone"
    exit 0
  fi
  if [[ $base_state == 1 && $(image_state "$BUILD_IMAGE_TAG") == 1 ]]; then
    log "$BASE_IMAGE_TAG and $BUILD_IMAGE_TAG are current ($key); nothing to do (--force to re-import)"
    exit 0
  fi
fi

mkdir -p "$CACHE_DIR"

if [[ $refresh == 1 ]]; then rm -f "$tarball" "$build_tarball"; fi
if [[ -s $tarball && -s $build_tarball ]]; then
  log "using cached rootfs tarballs ($key)"
else
  rootfs="$(mktemp -d "${TMPDIR:-/tmp}/scorer-rootfs.XXXXXX")"
  on_exit release_rootfs "$rootfs"
  build_log="$LOG_DIR/debootstrap-python-base.log"
  in_rootfs() { run_logged "$build_log" chroot "$rootfs" /usr/bin/env DEBIAN_FRONTEND=noninteractive sh -c "$1"; }

  debootstrap_rootfs "$rootfs" "$PACKAGES" "$build_log"

  log "applying $DEBIAN_SUITE-updates and $DEBIAN_SUITE-security"
  printf '%s\n' "deb $DEBIAN_MIRROR $DEBIAN_SUITE main" \
    "deb $DEBIAN_MIRROR $DEBIAN_SUITE-updates main" \
    "deb $SECURITY_MIRROR $DEBIAN_SUITE-security main" >"$rootfs/etc/apt/sources.list"
  cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
  in_rootfs 'apt-get update -qq && apt-get -y -qq -o Dpkg::Use-Pty=0 dist-upgrade && apt-get clean'

  log "slimming and adding /usr/local/bin/python"
  # Like the official image: `python` and `python3` in /usr/local/bin (first on PATH).
  ln -sf /usr/bin/python3.11 "$rootfs/usr/local/bin/python"
  ln -sf /usr/bin/python3.11 "$rootfs/usr/local/bin/python3"
  ln -sf /usr/bin/python3.11 "$rootfs/usr/local/bin/python3.11"
  # What Debian's slim images also drop: docs, man pages, translations (keeping locale.alias),
  # apt lists and caches, logs; the host's resolv.conf is emptied below.
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  rm -rf "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
    "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
    "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/*
  # Bytecode of the standard library, so a read-only root never wants to write it.
  chroot "$rootfs" /usr/bin/python3.11 -m compileall -q -j 0 /usr/lib/python3.11 >/dev/null || true
  : >"$rootfs/etc/resolv.conf"
  printf '%s\n' "$DEBIAN_SUITE-minbase $PACKAGES key=$key" >"$rootfs/etc/scorer-base-image"

  log "packing $tarball"
  tar --numeric-owner --xattrs -C "$rootfs" -cf "$tarball.tmp" .

  log "builder variant: + $BUILD_PACKAGES"
  cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
  in_rootfs "apt-get update -qq && apt-get install -y -qq -o Dpkg::Use-Pty=0 \
    --no-install-recommends $BUILD_PACKAGES && apt-get clean"
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* \
    "$rootfs"/var/log/apt/* "$rootfs"/var/log/*.log
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  : >"$rootfs/etc/resolv.conf"
  tar --numeric-owner --xattrs -C "$rootfs" -cf "$build_tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  mv "$build_tarball.tmp" "$build_tarball"
fi

if [[ $rootfs_only == 1 ]]; then log "rootfs ready: $tarball $build_tarball"; exit 0; fi

import_image() { # TARBALL TAG DESCRIPTION
  log "docker import -> $2"
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PYTHON_VERSION=3.11' \
    --change "LABEL org.opencontainers.image.description=\"$3\"" \
    --change "LABEL $IMAGE_KEY_LABEL=$key" \
    --change 'CMD ["python3"]' \
    "$1" "$2" >/dev/null
  log "done: $(docker image ls --format '{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}' "$2")"
}
import_image "$tarball" "$BASE_IMAGE_TAG" \
  "Local stand-in for python:3.11-slim-bookworm (debootstrap minbase + Debian python3.11)"
import_image "$build_tarball" "$BUILD_IMAGE_TAG" \
  "$BASE_IMAGE_TAG stand-in plus $BUILD_PACKAGES, for builder stages"
