#!/usr/bin/env bash
# Go/C tools other than Kubernetes itself, each cached by version:
#   $BIN_DIR/kind                      sigs.k8s.io/kind@$KIND_VERSION
#   $K8S_CACHE/bin/etcd                go.etcd.io/etcd/server/v3 at the version kubeadm expects
#   $KIND_CACHE/coredns-$COREDNS_VERSION/coredns
#   $KIND_CACHE/pause/pause            static C program (files/pause.c)
# Usage: tools.sh kind|etcd|coredns|pause [etcd-version]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

what="${1:?usage: tools.sh kind|etcd|coredns|pause}"
case "$what" in
  kind)
    out="$KIND_CACHE/kind-$KIND_VERSION/kind"
    if [[ ! -x "$out" ]]; then
      log "go install sigs.k8s.io/kind@$KIND_VERSION"
      GOBIN="$(dirname "$out")" nice -n 10 go install -trimpath -ldflags=-s sigs.k8s.io/kind@"$KIND_VERSION"
    fi
    ln -sf "$out" "$BIN_DIR/kind"
    echo "$out"
    ;;
  etcd)
    ver="${2:?etcd version (e.g. 3.5.24)}"
    out="$KIND_CACHE/etcd-v$ver/etcd"
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
        cd "$src"
        go mod tidy
        log "go build etcd v$ver"
        nice -n 10 go build -trimpath -ldflags "-s -w" -o "$out" .
      )
    fi
    echo "$out"
    ;;
  coredns)
    out="$KIND_CACHE/coredns-$COREDNS_VERSION/coredns"
    if [[ ! -x "$out" ]]; then
      log "go install github.com/coredns/coredns@$COREDNS_VERSION"
      GOTOOLCHAIN="$K8S_GO_TOOLCHAIN" GOBIN="$(dirname "$out")" nice -n 10 \
        go install -trimpath -ldflags "-s -w" github.com/coredns/coredns@"$COREDNS_VERSION"
    fi
    echo "$out"
    ;;
  pause)
    out="$KIND_CACHE/pause/pause"
    src="$HACK_KIND_DIR/files/pause.c"
    if [[ ! -x "$out" || "$src" -nt "$out" ]]; then
      mkdir -p "$(dirname "$out")"
      gcc -Os -static -Wall -o "$out" "$src"
      strip "$out"
    fi
    echo "$out"
    ;;
  *) echo "unknown tool $what" >&2; exit 2 ;;
esac
