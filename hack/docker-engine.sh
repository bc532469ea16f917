#!/usr/bin/env bash
# Make a Docker engine available on this machine (no systemd): install
# docker.io if missing, install a runc wrapper where the capability bounding
# set lacks CAP_SYS_RESOURCE, start dockerd in the background if `docker info`
# fails, and wait until it answers. Idempotent; safe to run repeatedly.
#
# Env: SCORER_CACHE (default ~/.cache/scorer), DOCKER_WAIT_SECONDS (default 60).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LOG="$LOG_DIR/dockerd.log"
WRAPPER_SRC="$HACK_DIR/kind/files/runc-wrapper"
WRAPPER_DST="/usr/local/sbin/scorer-runc"
RUNTIME_NAME="scorer-runc"

command -v dockerd >/dev/null 2>&1 || apt_install docker.io jq

args=()
capbnd="$(awk '/^CapBnd:/ {print $2}' /proc/self/status)"
if (( ((16#$capbnd) >> 24) & 1 )); then
  log "CAP_SYS_RESOURCE in the bounding set: plain runc"
else
  command -v jq >/dev/null || die "jq is required by the runc wrapper"
  cmp -s "$WRAPPER_SRC" "$WRAPPER_DST" || install -m 0755 "$WRAPPER_SRC" "$WRAPPER_DST"
  args+=(--add-runtime "$RUNTIME_NAME=$WRAPPER_DST" --default-runtime "$RUNTIME_NAME")
  log "CAP_SYS_RESOURCE missing from the bounding set: default runtime $RUNTIME_NAME ($WRAPPER_DST)"
fi

if docker info >/dev/null 2>&1; then
  log "docker engine already running"
  exit 0
fi

if pgrep -x dockerd >/dev/null; then
  log "dockerd is running but not answering yet; waiting"
else
  log "starting dockerd (log: $LOG)"
  # setsid: own session, so it outlives the calling shell.
  setsid nohup dockerd "${args[@]}" >>"$LOG" 2>&1 </dev/null &
  echo $! >"$SCORER_CACHE/dockerd.pid"
fi

deadline=$((SECONDS + ${DOCKER_WAIT_SECONDS:-60}))
until docker info >/dev/null 2>&1; do
  if ((SECONDS > deadline)); then
    log "dockerd did not come up; last log lines:"
    tail -n 20 "$LOG" >&2
    exit 1
  fi
  sleep 1
done
log "docker engine ready: $(docker version --format '{{.Server.Version}}' 2>/dev/null)"
