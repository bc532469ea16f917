#!/usr/bin/env bash
# Build everything a kind cluster needs, offline (Go module proxy + Debian
# packages only), cached under ~/.cache/scorer/kind, every artefact keyed on its
# inputs and the script that builds it. A warm run only checks the keys (and
# reloads saved image tars into a fresh docker daemon).
#
#   hack/kind/build.sh            # build what is missing, write the env file
#   source ~/.cache/scorer/kind.env
#
# Env overrides: K8S_VERSION, KIND_VERSION, K8S_GO_TOOLCHAIN, COREDNS_VERSION,
# SCORER_CACHE, SCORER_IMAGE_PREFIX, KIND_NODE_IMAGE, DEBIAN_MIRROR. Logs: ~/.cache/scorer/logs/.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

timings=()
stage_out="$(mktemp)"
on_exit rm -f "$stage_out"
# stage NAME COMMAND...: run and time COMMAND; what it prints (its artefact) is left in $out.
stage() {
  local name="$1" start end; shift
  start="$(date +%s.%N)"
  log "== $name"
  "$@" >"$stage_out"
  out="$(cat "$stage_out")"
  end="$(date +%s.%N)"
  timings+=("$(printf '%-14s %7.1fs' "$name" "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')")")
}

stage docker bash "$HACK_DIR/docker-engine.sh"
stage kind "$HACK_KIND_DIR/tools.sh" kind
stage kubernetes "$HACK_KIND_DIR/k8s-binaries.sh"
ln -sf "$out/kubectl" "$BIN_DIR/kubectl"
# The node base image and the component images are built by node-image.sh, only when the
# node image itself is not cached (in docker or as a saved tar).
stage node-image "$HACK_KIND_DIR/node-image.sh"
read -r node_image node_image_tar <<<"$out"

# A small general-purpose image for e2e probes (bash, getent, iproute2), from the tools rootfs.
stage rootfs "$HACK_KIND_DIR/rootfs.sh" tools
probe_rootfs="$out"
probe_image="$IMAGE_PREFIX/e2e-probe:bookworm"
probe_key="$("$HACK_KIND_DIR/rootfs.sh" --key tools)"
make_probe_image() {
  [[ $(image_key "$probe_image") == "$probe_key" ]] && return 0
  docker import --change 'CMD ["/bin/bash"]' --change "LABEL $IMAGE_KEY_LABEL=$probe_key" \
    "$probe_rootfs" "$probe_image" >/dev/null
}
stage probe-image make_probe_image

cat >"$KIND_ENV_FILE.tmp" <<ENV
# Written by hack/kind/build.sh; source it or read it as KEY=VALUE lines.
KIND_BIN=$BIN_DIR/kind
KUBECTL_BIN=$BIN_DIR/kubectl
KIND_NODE_IMAGE=$node_image
KIND_NODE_IMAGE_TAR=$node_image_tar
KIND_VERSION=$KIND_VERSION
K8S_VERSION=$K8S_VERSION
E2E_PROBE_IMAGE=$probe_image
E2E_PROBE_ROOTFS_TAR=$probe_rootfs
ENV
mv "$KIND_ENV_FILE.tmp" "$KIND_ENV_FILE"

log "stage timings:"
printf '  %s\n' "${timings[@]}" >&2
grep -v '^#' "$KIND_ENV_FILE"
log "env file: $KIND_ENV_FILE"
