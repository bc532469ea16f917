#!/usr/bin/env bash
# Build the Prometheus tools the metrics tests need from the Go module proxy into
# ~/.cache/scorer/bin: the Pushgateway (tests/support/services.py starts it on loopback for the
# integration tests) and promtool (`promtool check rules` / `promtool test rules` on the chart's
# PrometheusRule, tests/chart/test_metrics.py).
#
#   bash hack/prometheus.sh      -> prints the two binaries' paths on stdout
#
# No release downloads. Like hack/helm.sh, a binary is keyed by its version and by a hash of
# the shell function that builds it (bin/promtool-v0.316.0-<key>); bin/pushgateway and
# bin/promtool are symlinks to the current ones, so a warm run does nothing.
#
# Both are built inside their own downloaded module (against its go.mod and go.sum): `go install
# module@version` asks the proxy for the module's version list, which the proxy here refuses.
# Prometheus's module root carries a go.work naming directories the module zip leaves out, so
# its build runs with GOWORK=off. Only ./cmd/promtool is built, with the `remove_all_sd` tag:
# the service-discovery plugins (cloud SDKs: most of a cold build) are what `promtool check
# config` would need, not `check rules` or `test rules`.
#
# Environment: PUSHGATEWAY_VERSION, PROMETHEUS_VERSION (the Go module's version: v0.316.0 is
# Prometheus 3.16.0), SCORER_CACHE (default ~/.cache/scorer).
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PUSHGATEWAY_VERSION="${PUSHGATEWAY_VERSION:-v1.11.1}"
PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.316.0}"
use_go_cache
export GOFLAGS="-modcacherw -buildvcs=false"

command -v go >/dev/null 2>&1 || die "go is not on PATH"

# The cache name of a tool: NAME-VERSION-<key of VERSION and of the function that builds it>.
cached() {
  printf '%s-%s-%s' "$1" "$2" "$(cache_key "$2" -F "$3")"
}

# Point bin/NAME at bin/FILE atomically.
link() {
  ln -sfn "$2" "${BIN_DIR}/$1.tmp.$$"
  mv -Tf "${BIN_DIR}/$1.tmp.$$" "${BIN_DIR}/$1"
}

# The directory of a downloaded module (MODULE@VERSION) in the module cache.
module_dir() {
  go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p'
}

# build_in_module NAME VERSION MODULE PACKAGE LDFLAGS [GO BUILD FLAG...]: go build PACKAGE inside
# MODULE@VERSION's downloaded directory into bin/NAME-VERSION-<key>, timed in the log.
build_in_module() {
  local name="$1" version="$2" module="$3" package="$4" ldflags="$5"
  shift 5
  local cached_name out dir start
  cached_name="$(cached "${name}" "${version}" "build_${name}")"
  out="${BIN_DIR}/${cached_name}"
  if [[ -x "${out}" ]] && "${out}" --version >/dev/null 2>&1; then
    log "${name} ${version} already built"
    link "${name}" "${cached_name}"
    return 0
  fi
  dir="$(module_dir "${module}@${version}")"
  [[ -f "${dir}/go.mod" ]] || { log "cannot fetch ${module}@${version}"; return 1; }
  log "building ${name} ${version} from the Go module proxy"
  start=${SECONDS}
  (
    cd "${dir}"
    GOWORK=off nice -n 10 go build -trimpath -ldflags "${ldflags}" "$@" -o "${out}.tmp" "${package}"
  ) || { rm -f "${out}.tmp"; return 1; }
  mv -f "${out}.tmp" "${out}"
  link "${name}" "${cached_name}"
  log "built ${name} ${version} in $((SECONDS - start)) s"
}

# ldflags stamping github.com/prometheus/common/version (what --version prints).
version_ldflags() {
  printf '%s' "-s -w -X github.com/prometheus/common/version.Version=${1#v} -X github.com/prometheus/common/version.Branch=HEAD"
}

build_pushgateway() {
  build_in_module pushgateway "${PUSHGATEWAY_VERSION}" github.com/prometheus/pushgateway . \
    "$(version_ldflags "${PUSHGATEWAY_VERSION}")"
}

build_promtool() {
  # Module v0.316.0 is Prometheus 3.16.0 (v0.305.1 is 3.5.1): major*100+minor as the minor.
  local minor="${PROMETHEUS_VERSION#v0.}"
  minor="${minor%%.*}"
  local release="$((minor / 100)).$((minor % 100)).${PROMETHEUS_VERSION##*.}"
  build_in_module promtool "${PROMETHEUS_VERSION}" github.com/prometheus/prometheus ./cmd/promtool \
    "$(version_ldflags "${release}")" -tags remove_all_sd
}

main() {
  local failed=()
  build_pushgateway || failed+=(pushgateway)
  build_promtool || failed+=(promtool)
  if ((${#failed[@]})); then
    log "FAILED to build: ${failed[*]} (the metrics tests need both)"
    exit 1
  fi
  echo "${BIN_DIR}/pushgateway"
  echo "${BIN_DIR}/promtool"
}

# Everything above only defines; bash has read the whole file before main runs.
main "$@"
