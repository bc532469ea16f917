#!/usr/bin/env bash
# Debian bookworm root filesystems made with debootstrap, cached as tarballs keyed on the
# package list, the suite, the mirror, this script and the debootstrap helper:
#   rootfs.sh node   -> $KIND_CACHE/rootfs/node-bookworm-<key>.tar   (systemd, containerd, runc, CNI plugins, iptables, ...)
#   rootfs.sh tools  -> $KIND_CACHE/rootfs/tools-bookworm-<key>.tar  (minbase + iptables, conntrack: kube-proxy base, e2e probe image)
# Prints the tarball path. `rootfs.sh --key node|tools` prints the key only (builds nothing).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

key_only=0
[[ ${1:-} == --key ]] && { key_only=1; shift; }
name="${1:?usage: rootfs.sh [--key] node|tools}"
case "$name" in
  node)
    pkgs=systemd,systemd-sysv,dbus,containerd,runc,containernetworking-plugins,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,bash,ca-certificates,curl,jq,procps,fuse-overlayfs
    ;;
  tools) pkgs=iptables,conntrack,iproute2,bash,procps ;;
  *) die "unknown rootfs $name (node|tools)" ;;
esac

key="$(cache_key "$name" "$pkgs" "$DEBIAN_SUITE" "$DEBIAN_MIRROR" \
  -f "${BASH_SOURCE[0]}" -F debootstrap_rootfs)"
if ((key_only)); then echo "$key"; exit 0; fi

out="$KIND_CACHE/rootfs/$name-$DEBIAN_SUITE-$key.tar"
if [[ -s $out ]]; then echo "$out"; exit 0; fi
mkdir -p "$KIND_CACHE/rootfs"
dir="$(mktemp -d "$KIND_CACHE/rootfs/$name.XXXXXX")"
on_exit release_rootfs "$dir"
debootstrap_rootfs "$dir" "$pkgs" "$LOG_DIR/debootstrap-$name.log"
# trim: apt lists and caches are not needed in images
rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb
tar -C "$dir" --numeric-owner -cf "$out.tmp" .
mv "$out.tmp" "$out"
echo "$out"
