# shellcheck shell=bash
# shellcheck disable=SC2034 # settings for the scripts that source this file
# The offline kind build's own settings: versions, where its artefacts are cached, the Go
# environment and the Kubernetes version stamp. Sourced by hack/kind/*.sh; it sources
# hack/lib.sh (logging, SCORER_CACHE, cache keys, debootstrap) first.
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

KIND_VERSION="${KIND_VERSION:-v0.24.0}"
K8S_VERSION="${K8S_VERSION:-v1.31.14}"
# Go toolchain used for Kubernetes/etcd/coredns (fetched from the module proxy
# by GOTOOLCHAIN if the installed go is a different version).
K8S_GO_TOOLCHAIN="${K8S_GO_TOOLCHAIN:-go1.23.12}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.11.3}"
# Repository prefix of the images built here (node base, node, e2e probe).
IMAGE_PREFIX="${SCORER_IMAGE_PREFIX:-scorer.local}"

HACK_KIND_DIR="$HACK_DIR/kind"
# Every artefact lives in a directory or file named by its version and cache key, e.g.
# kind/rootfs/node-bookworm-<key>.tar, kind/kubernetes/v1.31.14-<key>/bin/kubelet.
KIND_CACHE="$SCORER_CACHE/kind"
KIND_ENV_FILE="$SCORER_CACHE/kind.env"
mkdir -p "$KIND_CACHE"

use_go_cache
export GOFLAGS="-mod=mod"

# k8s version pieces for -ldflags
k8s_ldflags() {
  local v="$1" major minor
  major="${v#v}"; major="${major%%.*}"
  minor="${v#v*.}"; minor="${minor%%.*}"
  local f="" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    f+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    f+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  printf '%s' "-s -w$f"
}
