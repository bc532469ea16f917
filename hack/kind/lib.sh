# shellcheck shell=bash
# Common settings for the offline kind build. Sourced by the other scripts.
set -euo pipefail

KIND_VERSION="${KIND_VERSION:-v0.24.0}"
K8S_VERSION="${K8S_VERSION:-v1.31.14}"
# Go toolchain used for Kubernetes/etcd/coredns (fetched from the module proxy
# by GOTOOLCHAIN if the installed go is a different version).
K8S_GO_TOOLCHAIN="${K8S_GO_TOOLCHAIN:-go1.23.12}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.11.3}"
# Repository prefix of the images built here (base, node, e2e probe).
IMAGE_PREFIX="${SCORER_IMAGE_PREFIX:-scorer.local}"

SCORER_CACHE="${SCORER_CACHE:-$HOME/.cache/scorer}"
BIN_DIR="$SCORER_CACHE/bin"
KIND_CACHE="$SCORER_CACHE/kind"
K8S_CACHE="$KIND_CACHE/$K8S_VERSION"
IMAGE_CACHE="$K8S_CACHE/images"
LOG_DIR="$SCORER_CACHE/logs"
KIND_ENV_FILE="$SCORER_CACHE/kind.env"

export GOMODCACHE="$SCORER_CACHE/go/mod"
export GOCACHE="$SCORER_CACHE/go/build"
export GOPATH="$SCORER_CACHE/go/path"
export GOFLAGS="-mod=mod"
export CGO_ENABLED=0

HACK_KIND_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

mkdir -p "$BIN_DIR" "$K8S_CACHE" "$IMAGE_CACHE" "$LOG_DIR" "$GOMODCACHE" "$GOCACHE"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# k8s version pieces for -ldflags
k8s_ldflags() {
  local v="$1" major minor
  major="${v#v}"; major="${major%%.*}"
  minor="${v#v*.}"; minor="${minor%%.*}"
  local f=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    f+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    f+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  printf '%s' "-s -w$f"
}
