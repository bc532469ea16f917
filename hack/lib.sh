# shellcheck shell=bash
# What every hack/ script shares: logging, the cache layout, cache keys, apt and debootstrap.
# Source it first thing (after `set -euo pipefail`):
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"        # hack/kind/*.sh: kind/lib.sh sources it
#
# It prints nothing on stdout (scripts print their artefact there) and defines:
#   log MSG / die MSG       "[kind/rootfs 10:02:03] MSG" on stderr (die: then exit 1)
#   SCORER_CACHE            ~/.cache/scorer unless set (exported): every cached build lives there
#   BIN_DIR, LOG_DIR        $SCORER_CACHE/bin (tools built here), $SCORER_CACHE/logs (build logs)
#   cache_key ARG...        the key of a cached artefact (see below)
#   image_key, restore_image, save_image     docker images cached as saved tars, by key
#   on_exit CMD ARG...      run a command when the script exits (several may be registered)
#   run_logged LOG CMD...   run CMD into LOG; on failure show the log's tail and exit
#   apt_install PKG...      Debian packages, quietly (log: $LOG_DIR/apt.log)
#   need_root WHAT
#   DEBIAN_SUITE, DEBIAN_MIRROR, debootstrap_rootfs DIR PACKAGES LOG, release_rootfs DIR
#   use_go_cache            GOMODCACHE, GOCACHE, GOPATH under $SCORER_CACHE/go; CGO_ENABLED=0

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$HACK_DIR")"

export SCORER_CACHE="${SCORER_CACHE:-$HOME/.cache/scorer}"
BIN_DIR="$SCORER_CACHE/bin"
LOG_DIR="$SCORER_CACHE/logs"
mkdir -p "$BIN_DIR" "$LOG_DIR"

# ---- logging ------------------------------------------------------------------------------
# The name in front of each line: the running script's path below hack/, without .sh
# (hack/kind/rootfs.sh -> kind/rootfs; .ci/run -> .ci/run).
_script="$(cd "$(dirname "${BASH_SOURCE[-1]}")" && pwd)/$(basename "${BASH_SOURCE[-1]}")"
LOG_NAME="${_script#"$REPO_DIR"/}"
LOG_NAME="${LOG_NAME#hack/}"
LOG_NAME="${LOG_NAME%.sh}"
unset _script

log() { printf '[%s %s] %s\n' "$LOG_NAME" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "$*"; exit 1; }

# ---- cache keys ---------------------------------------------------------------------------
# cache_key [-f FILE | -F FUNCTION | STRING]...
# 16 hex digits of a sha256 over every argument: a file's content (-f), a shell function's
# definition (-F: `declare -f`, so a helper from this file counts only by its own text), or
# the string itself (versions, package lists, mirrors, upstream artefacts' keys). Every cached
# artefact is stored under a name that carries its key, computed from all its inputs and the
# script that builds it (-f "${BASH_SOURCE[0]}"): edit any of them and the next run builds a
# new artefact next to the old one, which is never read again.
cache_key() {
  {
    while (($#)); do
      case "$1" in
        -f) printf 'file %s %s\n' "${2##*/}" "$(wc -c <"$2")"; cat "$2"; shift 2 ;;
        -F) declare -f "$2" || { log "cache_key: no function $2"; return 1; }; shift 2 ;;
        *) printf 'string %s\n' "$1"; shift ;;
      esac
    done
  } | sha256sum | cut -c1-16
}

# ---- docker images cached as saved tars ---------------------------------------------------
# Images built here carry their cache key as the label io.scorer.cache-key
# (docker import/commit --change "LABEL io.scorer.cache-key=$key").
IMAGE_KEY_LABEL=io.scorer.cache-key

# image_key TAG: the key label of a local image; empty when the image is absent or unlabelled.
image_key() {
  local label
  label="$(docker image inspect --format "{{ index .Config.Labels \"$IMAGE_KEY_LABEL\" }}" "$1" 2>/dev/null)" || return 0
  [[ $label == "<no value>" ]] || printf '%s' "$label"
}

# restore_image TAG KEY SAVED: succeed when docker has TAG at KEY, loading it from the saved
# tar SAVED if need be; fail when it must be built.
restore_image() {
  [[ $(image_key "$1") == "$2" ]] && return 0
  [[ -s $3 ]] || return 1
  log "docker load $3"
  docker load -i "$3" >/dev/null
  [[ $(image_key "$1") == "$2" ]] || die "$3 does not hold $1 at key $2"
}

# save_image TAG SAVED: docker save, atomically.
save_image() {
  mkdir -p "$(dirname "$2")"
  docker save -o "$2.tmp" "$1"
  mv "$2.tmp" "$2"
}

# ---- process helpers ----------------------------------------------------------------------
_exit_hooks=()
# on_exit CMD ARG...: run CMD at exit (last registered first; its output goes to stderr, since
# stdout carries the script's result). Replaces `trap ... EXIT`, so helpers and scripts can
# each register their own clean-up.
on_exit() {
  local cmd
  printf -v cmd '%q ' "$@"
  _exit_hooks=("$cmd" "${_exit_hooks[@]}")
  trap _run_exit_hooks EXIT
}
_run_exit_hooks() {
  local hook
  for hook in "${_exit_hooks[@]}"; do eval "$hook" >&2 || true; done
}

# run_logged LOG CMD...: CMD's output goes to LOG; on failure show its last lines and exit.
run_logged() {
  local logfile="$1"; shift
  "$@" >>"$logfile" 2>&1 || { tail -n 30 "$logfile" >&2; die "failed: $* (log: $logfile)"; }
}

need_root() { [[ $(id -u) == 0 ]] || die "$1 needs root"; }

# apt_install PACKAGE...: install Debian packages without recommends.
apt_install() {
  need_root "apt-get install $*"
  log "apt-get install $* (log: $LOG_DIR/apt.log)"
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -qq)
  run_logged "$LOG_DIR/apt.log" "${apt[@]}" update
  run_logged "$LOG_DIR/apt.log" "${apt[@]}" install -y --no-install-recommends "$@"
}

# ---- root filesystems ---------------------------------------------------------------------
DEBIAN_SUITE=bookworm
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

# debootstrap_rootfs DIR PACKAGES LOG: a minbase $DEBIAN_SUITE root filesystem in DIR with
# PACKAGES (comma-separated). Pass it to cache_key (-F debootstrap_rootfs) with the packages.
# Pair it with `on_exit release_rootfs DIR`.
debootstrap_rootfs() {
  local dir="$1" packages="$2" logfile="$3"
  need_root debootstrap
  command -v debootstrap >/dev/null || apt_install debootstrap
  log "debootstrap --variant=minbase $DEBIAN_SUITE (+ $packages) into $dir (log: $logfile)"
  : >"$logfile"
  run_logged "$logfile" nice -n 10 debootstrap --variant=minbase --include="$packages" \
    "$DEBIAN_SUITE" "$dir" "$DEBIAN_MIRROR"
}

# release_rootfs DIR: unmount what debootstrap or a chroot left mounted in DIR, then remove it
# without ever crossing into another file system.
release_rootfs() {
  local dir="$1" m
  [[ -d $dir ]] || return 0
  for m in proc sys dev/pts dev; do
    if mountpoint -q "$dir/$m" 2>/dev/null; then umount -l "$dir/$m" || true; fi
  done
  rm -rf --one-file-system "$dir"
}

# ---- Go -----------------------------------------------------------------------------------
# use_go_cache: the Go module and build caches under $SCORER_CACHE/go, kept between runs, so a
# warm rebuild of anything compiled from the module proxy takes seconds to minutes.
use_go_cache() {
  export GOMODCACHE="$SCORER_CACHE/go/mod"
  export GOCACHE="$SCORER_CACHE/go/build"
  export GOPATH="$SCORER_CACHE/go/path"
  export CGO_ENABLED=0
  mkdir -p "$GOMODCACHE" "$GOCACHE"
}
