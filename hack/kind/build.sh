#!/usr/bin/env bash
# Build everything a kind cluster needs, offline (Go module proxy + Debian
# packages only), cached by version under ~/.cache/scorer. A warm run only
# checks the cache (and reloads saved image tars into a fresh docker daemon).
#
#   hack/kind/build.sh            # build what is missing, write the env file
#   source ~/.cache/scorer/kind.env
#
# Env overrides: K8S_VERSION, KIND_VERSION, K8S_GO_TOOLCHAIN, COREDNS_VERSION,
# SCORER_CACHE, SCORER_IMAGE_PREFIX, KIND_NODE_IMAGE, DEBIAN_MIRROR. Logs: ~/.cache/scorer/logs/.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

timings=()
stage() { # name command...
  local name="$1" start end; shift
  start="$(date +%s.%N)"
  log "== $name"
  "$@"
  end="$(date +%s.%N)"
  timings+=("$(printf '%-14s %7.1fs' "$name" "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')")")
}

stage docker "$HACK_KIND_DIR/../docker-engine.sh"
stage kind "$HACK_KIND_DIR/tools.sh" kind >/dev/null
stage kubernetes "$HACK_KIND_DIR/k8s-binaries.sh" >/dev/null
ln -sf "$K8S_CACHE/bin/kubectl" "$BIN_DIR/kubectl"
stage rootfs bash -c "'$HACK_KIND_DIR/rootfs.sh' node && '$HACK_KIND_DIR/rootfs.sh' tools" >/dev/null
NODE_IMAGE="${KIND_NODE_IMAGE:-$IMAGE_PREFIX/kind-node:$K8S_VERSION}"
NODE_IMAGE_TAR="$K8S_CACHE/kind-node-$K8S_VERSION.tar"
# The base image and the component images only feed the node image: skip them
# when the node image is cached (in docker or as a saved tar).
if ! docker image inspect "$NODE_IMAGE" >/dev/null 2>&1 && [[ ! -s "$NODE_IMAGE_TAR" ]]; then
  stage node-base-image "$HACK_KIND_DIR/node-base-image.sh" >/dev/null
  stage images "$HACK_KIND_DIR/images.sh" >/dev/null
fi
stage node-image "$HACK_KIND_DIR/node-image.sh" >/dev/null

# A small general-purpose image for e2e probes (bash, getent, iproute2).
PROBE_IMAGE="$IMAGE_PREFIX/e2e-probe:bookworm"
probe_image() {
  docker image inspect "$PROBE_IMAGE" >/dev/null 2>&1 && return 0
  docker import --change 'CMD ["/bin/bash"]' "$("$HACK_KIND_DIR/rootfs.sh" tools)" "$PROBE_IMAGE" >/dev/null
}
stage probe-image probe_image

cat >"$KIND_ENV_FILE.tmp" <<ENV
# Written by hack/kind/build.sh; source it or read it as KEY=VALUE lines.
KIND_BIN=$BIN_DIR/kind
KUBECTL_BIN=$BIN_DIR/kubectl
KIND_NODE_IMAGE=$NODE_IMAGE
KIND_NODE_IMAGE_TAR=$NODE_IMAGE_TAR
KIND_VERSION=$KIND_VERSION
K8S_VERSION=$K8S_VERSION
E2E_PROBE_IMAGE=$PROBE_IMAGE
E2E_PROBE_ROOTFS_TAR=$KIND_CACHE/rootfs/tools-bookworm.tar
ENV
mv "$KIND_ENV_FILE.tmp" "$KIND_ENV_FILE"

log "stage timings:"
printf '  %s\n' "${timings[@]}" >&2
cat "$KIND_ENV_FILE" | grep -v '^#'
log "env file: $KIND_ENV_FILE"
