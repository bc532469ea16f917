#!/usr/bin/env bash
# Build the Kubernetes binaries of $K8S_VERSION from the Go module proxy.
# k8s.io/kubernetes replaces its staging modules with local paths, so a small
# wrapper module requires it and replaces each staging module by its published
# v0.X.Y version.
# Cached in $KIND_CACHE/kubernetes/$K8S_VERSION-<key>/bin, the key hashing the version, the
# Go toolchain, this script and the version stamp (k8s_ldflags). Prints that bin directory;
# `k8s-binaries.sh --key` prints the key only.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CMDS=(kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy)
key="$(cache_key "$K8S_VERSION" "$K8S_GO_TOOLCHAIN" "${CMDS[*]}" -f "${BASH_SOURCE[0]}" -F k8s_ldflags)"
if [[ ${1:-} == --key ]]; then echo "$key"; exit 0; fi
OUT="$KIND_CACHE/kubernetes/$K8S_VERSION-$key/bin"

have_all() { local c; for c in "${CMDS[@]}"; do [[ -x "$OUT/$c" ]] || return 1; done; }
if have_all; then log "k8s binaries $K8S_VERSION cached in $OUT"; echo "$OUT"; exit 0; fi

export GOTOOLCHAIN="$K8S_GO_TOOLCHAIN"
staging_version="v0.${K8S_VERSION#v1.}"
WORK="$KIND_CACHE/src/k8s-wrapper-$K8S_VERSION"
rm -rf "$OUT.tmp"
mkdir -p "$WORK" "$OUT.tmp"
cd "$WORK" || exit 1

go mod download k8s.io/kubernetes@"$K8S_VERSION"
k8s_mod="$(go mod download -json k8s.io/kubernetes@"$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
mapfile -t staging < <(awk '$2=="=>" && $3 ~ /^\.\/staging/ {print $1}' "$k8s_mod")

# The module proxy reachable here does not hold every patch release of every
# staging module: use v0.Y.Z when present, else the nearest lower patch.
declare -A resolved
for m in "${staging[@]}"; do
  case "$m" in k8s.io/sample-*|k8s.io/code-generator) resolved[$m]="$staging_version"; continue;; esac
  minor="${staging_version%.*}"; patch="${staging_version##*.}"
  for ((p = patch; p >= 0; p--)); do
    if go mod download "$m@$minor.$p" >/dev/null 2>&1; then resolved[$m]="$minor.$p"; break; fi
  done
  [[ -n "${resolved[$m]:-}" ]] || { log "no $minor.x of $m on the module proxy"; exit 1; }
  [[ "${resolved[$m]}" == "$staging_version" ]] || log "note: $m pinned to ${resolved[$m]} (no $staging_version on the proxy)"
done

{
  echo "module scorer.local/k8s-wrapper"
  echo
  echo "go 1.22.0"
  echo
  echo "require k8s.io/kubernetes $K8S_VERSION"
  echo
  echo "replace ("
  for m in "${staging[@]}"; do echo "	$m => $m ${resolved[$m]}"; done
  echo ")"
} > go.mod
{
  echo "//go:build tools"
  echo
  echo "package tools"
  echo
  echo "import ("
  for c in "${CMDS[@]}"; do echo "	_ \"k8s.io/kubernetes/cmd/$c\""; done
  echo ")"
} > tools.go

log "go mod tidy (k8s wrapper, ${#staging[@]} staging replaces)"
go mod tidy

pkgs=()
for c in "${CMDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
log "go build ${CMDS[*]} ($K8S_VERSION, $(go version))"
nice -n 10 go build -trimpath -tags=providerless -ldflags "$(k8s_ldflags "$K8S_VERSION")" -o "$OUT.tmp/" "${pkgs[@]}"
rm -rf "$OUT"; mv "$OUT.tmp" "$OUT"
log "built $("$OUT/kubeadm" version -o short) in $OUT"
echo "$OUT"
