#!/usr/bin/env bash
# Go/C tools other than Kubernetes itself, each cached under $KIND_CACHE/tools/ in a directory
# keyed on its version and this script (pause: on its source, files/pause.c):
#   kind     sigs.k8s.io/kind@$KIND_VERSION (linked as $BIN_DIR/kind)
#   etcd     go.etcd.io/etcd/server/v3 at the version kubeadm expects
#   coredns  github.com/coredns/coredns@$COREDNS_VERSION
#   pause    static C program (files/pause.c)
# Usage: tools.sh kind|etcd VERSION|coredns|pause     prints the binary's path
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

what="${1:?usage: tools.sh kind|etcd VERSION|coredns|pause}"
script="${BASH_SOURCE[0]}"
# tool_dir NAME-VERSION INPUT...: the keyed cache directory of one tool
tool_dir() {
  local dir
  dir="$KIND_CACHE/tools/$1-$(cache_key "$@" -f "$script")"
  mkdir -p "$dir"
  echo "$dir"
}

case "$what" in
  kind)
    out="$(tool_dir "kind-$KIND_VERSION")/kind"
    if [[ ! -x "$out" ]]; then
      log "go install sigs.k8s.io/kind@$KIND_VERSION"
      GOBIN="$(dirname "$out")" nice -n 10 go install -trimpath -ldflags=-s sigs.k8s.io/kind@"$KIND_VERSION"
    fi
    ln -sf "$out" "$BIN_DIR/kind"
    echo "$out"
    ;;
  etcd)
    ver="${2:?etcd version (e.g. 3.5.24)}"
    out="$(tool_dir "etcd-v$ver")/etcd"
    if [[ ! -x "$out" ]]; then
      # etcd's server module replaces its sibling modules with local paths;
      # a wrapper main requiring them at one version builds from the proxy.
      # (etcd 3.5.24 needs go >= 1.24: the installed go builds it)
      src="$KIND_CACHE/src/etcd-v$ver"
      mkdir -p "$src"
      cat >"$src/go.mod" <<GOMOD
module scorer.local/etcd

go 1.24

require (
	go.etcd.io/etcd/api/v3 v$ver
	go.etcd.io/etcd/client/pkg/v3 v$ver
	go.etcd.io/etcd/client/v2 v2.305.${ver##*.}
	go.etcd.io/etcd/client/v3 v$ver
	go.etcd.io/etcd/pkg/v3 v$ver
	go.etcd.io/etcd/raft/v3 v$ver
	go.etcd.io/etcd/server/v3 v$ver
)
GOMOD
      cat >"$src/main.go" <<'GO'
// Command etcd is go.etcd.io/etcd/server/v3/etcdmain built from the module proxy.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
      (
        cd "$src" || exit 1
        go mod tidy
        log "go build etcd v$ver"
        nice -n 10 go build -trimpath -ldflags "-s -w" -o "$out" .
      )
    fi
    echo "$out"
    ;;
  coredns)
    out="$(tool_dir "coredns-$COREDNS_VERSION" "$K8S_GO_TOOLCHAIN")/coredns"
    if [[ ! -x "$out" ]]; then
      log "go install github.com/coredns/coredns@$COREDNS_VERSION"
      GOTOOLCHAIN="$K8S_GO_TOOLCHAIN" GOBIN="$(dirname "$out")" nice -n 10 \
        go install -trimpath -ldflags "-s -w" github.com/coredns/coredns@"$COREDNS_VERSION"
    fi
    echo "$out"
    ;;
  pause)
    src="$HACK_KIND_DIR/files/pause.c"
    out="$(tool_dir pause -f "$src")/pause"
    if [[ ! -x "$out" ]]; then
      log "gcc -static $src"
      gcc -Os -static -Wall -o "$out.tmp" "$src"
      strip "$out.tmp"
      mv "$out.tmp" "$out"
    fi
    echo "$out"
    ;;
  *) die "unknown tool $what (kind|etcd VERSION|coredns|pause)" ;;
esac
