#!/usr/bin/env bash
# Build helm (and, best effort, helm-docs and skaffold) from the Go module proxy into
# ~/.cache/scorer/bin.
#
#   bash hack/helm.sh            -> prints the helm binary path on stdout (last line)
#
# No release downloads: every tool is compiled with `go` against the module proxy.
# Binaries are keyed by version (bin/helm-v3.19.5, bin/skaffold-v2.16.1) and bin/helm,
# bin/skaffold are symlinks to the current one, so a warm run does nothing. The Go module
# and build caches live under ~/.cache/scorer/go so warm rebuilds are quick.
#
# skaffold's go.mod carries `replace` directives, which `go install pkg@version` refuses
# ("The go.mod file for the module providing named packages contains one or more replace
# directives"). It is therefore built from a tiny wrapper module that requires skaffold and
# repeats its replace/exclude lines. A skaffold failure only warns; it never fails the script
# (set SKAFFOLD=0 to skip it). helm-docs (regenerates charts/scorer/README.md) is best effort too
# (HELM_DOCS=0 skips it).
#
# Environment: HELM_VERSION, HELM_DOCS_VERSION, SKAFFOLD_VERSION, HELM_DOCS (1|0), SKAFFOLD (1|0),
# SCORER_CACHE (default ~/.cache/scorer).
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.19.5}"
HELM_DOCS_VERSION="${HELM_DOCS_VERSION:-v1.14.2}"
SKAFFOLD_VERSION="${SKAFFOLD_VERSION:-v2.16.1}"
HELM_DOCS="${HELM_DOCS:-1}"
SKAFFOLD="${SKAFFOLD:-1}"
CACHE="${SCORER_CACHE:-${HOME}/.cache/scorer}"
BIN="${CACHE}/bin"

export GOMODCACHE="${CACHE}/go/mod"
export GOCACHE="${CACHE}/go/build"
export GOFLAGS="-modcacherw -buildvcs=false"
export CGO_ENABLED=0

log() { printf 'hack/helm.sh: %s\n' "$*" >&2; }

command -v go >/dev/null 2>&1 || { log "go is not on PATH (needs Go >= 1.24)"; exit 1; }
mkdir -p "${BIN}" "${GOMODCACHE}" "${GOCACHE}"

# Point bin/NAME at bin/NAME-VERSION atomically.
link() {
  ln -sfn "$1-$2" "${BIN}/$1.tmp.$$"
  mv -Tf "${BIN}/$1.tmp.$$" "${BIN}/$1"
}

build_helm() {
  local out="${BIN}/helm-${HELM_VERSION}"
  if [[ -x "${out}" ]] && "${out}" version --short >/dev/null 2>&1; then
    log "helm ${HELM_VERSION} already built"
    link helm "${HELM_VERSION}"
    return 0
  fi
  log "building helm ${HELM_VERSION} from the Go module proxy (a few minutes cold)"
  # helm's Makefile stamps its version and the Kubernetes version it reports as
  # .Capabilities.KubeVersion (client-go v0.X.Y -> 1.X); without it helm assumes v1.20.
  local gomod client_go minor
  gomod="$(go mod download -json "helm.sh/helm/v3@${HELM_VERSION}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  client_go="$(awk '$1 == "k8s.io/client-go" { print $2; exit }' "${gomod}")"
  minor="$(cut -d. -f2 <<<"${client_go#v}")"
  local ldflags="-s -w"
  ldflags+=" -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
  ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1"
  ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=${minor}"
  ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1"
  ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=${minor}"
  local gobin
  gobin="$(mktemp -d "${CACHE}/gobin.XXXXXX")"
  GOBIN="${gobin}" nice -n 10 go install -trimpath -ldflags "${ldflags}" "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
  mv -f "${gobin}/helm" "${out}"
  rmdir "${gobin}"
  link helm "${HELM_VERSION}"
  log "built $("${out}" version --short)"
}

build_helm_docs() {
  local out="${BIN}/helm-docs-${HELM_DOCS_VERSION}"
  if [[ -x "${out}" ]] && "${out}" --version >/dev/null 2>&1; then
    log "helm-docs ${HELM_DOCS_VERSION} already built"
    link helm-docs "${HELM_DOCS_VERSION}"
    return 0
  fi
  log "building helm-docs ${HELM_DOCS_VERSION}"
  local gobin
  gobin="$(mktemp -d "${CACHE}/gobin.XXXXXX")"
  GOBIN="${gobin}" nice -n 10 go install -trimpath -ldflags "-s -w -X main.version=${HELM_DOCS_VERSION#v}" \
    "github.com/norwoodj/helm-docs/cmd/helm-docs@${HELM_DOCS_VERSION}" || { rm -rf "${gobin}"; return 1; }
  mv -f "${gobin}/helm-docs" "${out}"
  rmdir "${gobin}"
  link helm-docs "${HELM_DOCS_VERSION}"
  log "built helm-docs ${HELM_DOCS_VERSION}"
}

build_skaffold() {
  local out="${BIN}/skaffold-${SKAFFOLD_VERSION}"
  if [[ -x "${out}" ]] && "${out}" version >/dev/null 2>&1; then
    log "skaffold ${SKAFFOLD_VERSION} already built"
    link skaffold "${SKAFFOLD_VERSION}"
    return 0
  fi
  log "building skaffold ${SKAFFOLD_VERSION} through a wrapper module (slow cold: large dependency tree)"
  local mod="github.com/GoogleContainerTools/skaffold/v2"
  local dir="${CACHE}/skaffold-wrapper-${SKAFFOLD_VERSION}"
  rm -rf "${dir}"
  mkdir -p "${dir}"
  local upstream
  upstream="$(go mod download -json "${mod}@${SKAFFOLD_VERSION}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  [[ -f "${upstream}" ]] || { log "cannot fetch ${mod}@${SKAFFOLD_VERSION}'s go.mod"; return 1; }
  {
    echo "module scorer.local/skaffold-wrapper"
    echo
    grep -E '^go [0-9]' "${upstream}"
    echo
    echo "require ${mod} ${SKAFFOLD_VERSION}"
    echo
    # Single-line replace/exclude directives only (skaffold writes them one per line).
    grep -E '^(replace|exclude) ' "${upstream}"
  } >"${dir}/go.mod"
  (
    cd "${dir}"
    # Resolve the full build list of skaffold's main package and write go.sum.
    nice -n 10 go get "${mod}/cmd/skaffold@${SKAFFOLD_VERSION}"
    nice -n 10 go build -trimpath \
      -ldflags "-s -w -X ${mod}/pkg/skaffold/version.version=${SKAFFOLD_VERSION}" \
      -o "${out}.tmp" "${mod}/cmd/skaffold"
  ) || { rm -f "${out}.tmp"; return 1; }
  mv -f "${out}.tmp" "${out}"
  link skaffold "${SKAFFOLD_VERSION}"
  log "built skaffold $("${out}" version)"
}

main() {
  build_helm
  if [[ "${HELM_DOCS}" == "1" ]]; then
    build_helm_docs || log "WARNING: helm-docs ${HELM_DOCS_VERSION} did not build; continuing without it"
  fi
  if [[ "${SKAFFOLD}" == "1" ]]; then
    build_skaffold || log "WARNING: skaffold ${SKAFFOLD_VERSION} did not build; continuing without it"
  fi
  echo "${BIN}/helm"
}

# Everything above only defines; bash has read the whole file before main runs, so editing
# this script while a long build is running cannot derail it.
main "$@"
