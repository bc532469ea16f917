#!/usr/bin/env bash
# Build the chart tools from the Go module proxy into ~/.cache/scorer/bin: helm, helm-docs
# (charts/scorer/README.md), helm-schema (charts/scorer/values.schema.json, the
# helm-values-schema-json plugin's binary), kube-score (a static check of the rendered chart)
# and skaffold.
#
#   bash hack/helm.sh            -> prints the helm binary path on stdout (last line)
#
# No release downloads: every tool is compiled with `go` against the module proxy.
# Binaries are keyed by version and by a hash of the shell function that builds them
# (bin/helm-v3.19.5-<hash>), so editing a recipe rebuilds that tool and only that tool;
# bin/helm, bin/skaffold, ... are symlinks to the current one, so a warm run does nothing. The
# Go module and build caches live under ~/.cache/scorer/go so warm rebuilds are quick.
#
# skaffold's go.mod carries `replace` directives, which `go install pkg@version` refuses
# ("The go.mod file for the module providing named packages contains one or more replace
# directives"). It is therefore built from a tiny wrapper module that requires skaffold and
# repeats its replace/exclude lines. `go install pkg@version` also asks the proxy for the
# module's version list (for deprecation notices), which the proxy here refuses for
# helm-values-schema-json: it is therefore built inside its own downloaded module, against that
# module's go.mod and go.sum.
#
# Every tool is required: the chart tests use each of them and fail (never skip) without it, so
# a tool that does not build fails the script.
#
# Environment: HELM_VERSION, HELM_DOCS_VERSION, HELM_SCHEMA_VERSION, KUBE_SCORE_VERSION,
# SKAFFOLD_VERSION, SCORER_CACHE (default ~/.cache/scorer).
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HELM_VERSION="${HELM_VERSION:-v3.19.5}"
HELM_DOCS_VERSION="${HELM_DOCS_VERSION:-v1.14.2}"
HELM_SCHEMA_VERSION="${HELM_SCHEMA_VERSION:-v2.5.0}"
KUBE_SCORE_VERSION="${KUBE_SCORE_VERSION:-v1.20.0}"
SKAFFOLD_VERSION="${SKAFFOLD_VERSION:-v2.16.1}"
use_go_cache
export GOFLAGS="-modcacherw -buildvcs=false"

command -v go >/dev/null 2>&1 || die "go is not on PATH (needs Go >= 1.24)"

# The cache name of a tool: NAME-VERSION-<key of VERSION and of the function that builds it>.
cached() {
  local name="$1" version="$2" fn="$3"
  printf '%s-%s-%s' "${name}" "${version}" "$(cache_key "${version}" -F "${fn}")"
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

build_helm() {
  local name out
  name="$(cached helm "${HELM_VERSION}" build_helm)"
  out="${BIN_DIR}/${name}"
  if [[ -x "${out}" ]] && "${out}" version --short >/dev/null 2>&1; then
    log "helm ${HELM_VERSION} already built"
    link helm "${name}"
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
  gobin="$(mktemp -d "${SCORER_CACHE}/gobin.XXXXXX")"
  GOBIN="${gobin}" nice -n 10 go install -trimpath -ldflags "${ldflags}" "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}" \
    || { rm -rf "${gobin}"; return 1; }
  mv -f "${gobin}/helm" "${out}"
  rmdir "${gobin}"
  link helm "${name}"
  log "built $("${out}" version --short)"
}

build_helm_docs() {
  local name out
  name="$(cached helm-docs "${HELM_DOCS_VERSION}" build_helm_docs)"
  out="${BIN_DIR}/${name}"
  if [[ -x "${out}" ]] && "${out}" --version >/dev/null 2>&1; then
    log "helm-docs ${HELM_DOCS_VERSION} already built"
    link helm-docs "${name}"
    return 0
  fi
  log "building helm-docs ${HELM_DOCS_VERSION}"
  local gobin
  gobin="$(mktemp -d "${SCORER_CACHE}/gobin.XXXXXX")"
  GOBIN="${gobin}" nice -n 10 go install -trimpath -ldflags "-s -w -X main.version=${HELM_DOCS_VERSION#v}" \
    "github.com/norwoodj/helm-docs/cmd/helm-docs@${HELM_DOCS_VERSION}" || { rm -rf "${gobin}"; return 1; }
  mv -f "${gobin}/helm-docs" "${out}"
  rmdir "${gobin}"
  link helm-docs "${name}"
  log "built helm-docs ${HELM_DOCS_VERSION}"
}

# helm-values-schema-json (`helm schema` as a plugin): generates values.schema.json from the
# `# @schema` annotations in values.yaml (see charts/scorer/.schema.yaml). Used as a plain
# binary, not installed as a helm plugin.
build_helm_schema() {
  local name out
  name="$(cached helm-schema "${HELM_SCHEMA_VERSION}" build_helm_schema)"
  out="${BIN_DIR}/${name}"
  if [[ -x "${out}" ]] && "${out}" version >/dev/null 2>&1; then
    log "helm-schema ${HELM_SCHEMA_VERSION} already built"
    link helm-schema "${name}"
    return 0
  fi
  log "building helm-values-schema-json ${HELM_SCHEMA_VERSION}"
  local dir
  dir="$(module_dir "github.com/losisin/helm-values-schema-json/v2@${HELM_SCHEMA_VERSION}")"
  [[ -f "${dir}/go.mod" ]] || { log "cannot fetch helm-values-schema-json ${HELM_SCHEMA_VERSION}"; return 1; }
  (
    cd "${dir}"
    nice -n 10 go build -trimpath -ldflags "-s -w -X main.Version=${HELM_SCHEMA_VERSION}" -o "${out}.tmp" .
  ) || { rm -f "${out}.tmp"; return 1; }
  mv -f "${out}.tmp" "${out}"
  link helm-schema "${name}"
  log "built $("${out}" version)"
}

build_kube_score() {
  local name out
  name="$(cached kube-score "${KUBE_SCORE_VERSION}" build_kube_score)"
  out="${BIN_DIR}/${name}"
  if [[ -x "${out}" ]] && "${out}" version >/dev/null 2>&1; then
    log "kube-score ${KUBE_SCORE_VERSION} already built"
    link kube-score "${name}"
    return 0
  fi
  log "building kube-score ${KUBE_SCORE_VERSION}"
  local gobin
  gobin="$(mktemp -d "${SCORER_CACHE}/gobin.XXXXXX")"
  GOBIN="${gobin}" nice -n 10 go install -trimpath -ldflags "-s -w -X main.version=${KUBE_SCORE_VERSION#v}" \
    "github.com/zegl/kube-score/cmd/kube-score@${KUBE_SCORE_VERSION}" || { rm -rf "${gobin}"; return 1; }
  mv -f "${gobin}/kube-score" "${out}"
  rmdir "${gobin}"
  link kube-score "${name}"
  log "built kube-score ${KUBE_SCORE_VERSION}"
}

build_skaffold() {
  local name out
  name="$(cached skaffold "${SKAFFOLD_VERSION}" build_skaffold)"
  out="${BIN_DIR}/${name}"
  if [[ -x "${out}" ]] && "${out}" version >/dev/null 2>&1; then
    log "skaffold ${SKAFFOLD_VERSION} already built"
    link skaffold "${name}"
    return 0
  fi
  log "building skaffold ${SKAFFOLD_VERSION} through a wrapper module (slow cold: large dependency tree)"
  local mod="github.com/GoogleContainerTools/skaffold/v2"
  local dir="${SCORER_CACHE}/skaffold-wrapper-${SKAFFOLD_VERSION}"
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
  link skaffold "${name}"
  log "built skaffold $("${out}" version)"
}

main() {
  local failed=()
  build_helm || failed+=(helm)
  build_helm_docs || failed+=(helm-docs)
  build_helm_schema || failed+=(helm-schema)
  build_kube_score || failed+=(kube-score)
  build_skaffold || failed+=(skaffold)
  if ((${#failed[@]})); then
    log "FAILED to build: ${failed[*]} (the chart tests need every tool)"
    exit 1
  fi
  echo "${BIN_DIR}/helm"
}

# Everything above only defines; bash has read the whole file before main runs, so editing
# this script while a long build is running cannot derail it.
main "$@"
