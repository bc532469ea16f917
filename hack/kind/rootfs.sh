#!/usr/bin/env bash
# Debian bookworm root filesystems made with debootstrap, cached as tarballs:
#   rootfs.sh node   -> $KIND_CACHE/rootfs/node-bookworm.tar   (systemd, containerd, runc, CNI plugins, iptables, ...)
#   rootfs.sh tools  -> $KIND_CACHE/rootfs/tools-bookworm.tar  (minbase + iptables, conntrack: kube-proxy base, e2e probe image)
# Prints the tarball path.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
kind="${1:?usage: rootfs.sh node|tools}"
case "$kind" in
  node)
    pkgs=systemd,systemd-sysv,dbus,containerd,runc,containernetworking-plugins,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,bash,ca-certificates,curl,jq,procps,fuse-overlayfs
    ;;
  tools) pkgs=iptables,conntrack,iproute2,bash,procps ;;
  *) echo "unknown rootfs $kind" >&2; exit 2 ;;
esac

out="$KIND_CACHE/rootfs/$kind-bookworm.tar"
if [[ -s "$out" ]]; then echo "$out"; exit 0; fi
mkdir -p "$KIND_CACHE/rootfs"
dir="$(mktemp -d "$KIND_CACHE/rootfs/$kind.XXXXXX")"
trap 'rm -rf "$dir"' EXIT
log "debootstrap $kind rootfs ($pkgs)"
nice -n 10 debootstrap --variant=minbase --include="$pkgs" bookworm "$dir" "$MIRROR" >"$LOG_DIR/debootstrap-$kind.log" 2>&1 \
  || { tail -n 20 "$LOG_DIR/debootstrap-$kind.log" >&2; exit 1; }
# trim: apt lists and caches are not needed in images
rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb
tar -C "$dir" --numeric-owner -cf "$out.tmp" .
mv "$out.tmp" "$out"
echo "$out"
