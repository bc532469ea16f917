#!/usr/bin/env bash
# kind's node base image, rebuilt offline: a debootstrap'd bookworm rootfs (rootfs.sh node:
# Debian's systemd, containerd, runc, CNI plugins) plus kind $KIND_VERSION's
# images/base/files and the same setup steps as kind's images/base/Dockerfile.
# Tagged $IMAGE_PREFIX/kind-base:$KIND_VERSION-bookworm, labelled with its key (the tag, the
# kind version, the rootfs' key, this script and the files it copies in) and saved to
# $KIND_CACHE/node-base/kind-base-$KIND_VERSION-<key>.tar. Prints the tag;
# `node-base-image.sh --key` prints the key only.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tag="$IMAGE_PREFIX/kind-base:$KIND_VERSION-bookworm"
key="$(cache_key "$tag" "$KIND_VERSION" "rootfs node $("$HACK_KIND_DIR/rootfs.sh" --key node)" \
  -f "${BASH_SOURCE[0]}" -f "$HACK_KIND_DIR/files/10-scorer-ptp.conflist" \
  -f "$HACK_KIND_DIR/files/runc-wrapper")"
if [[ ${1:-} == --key ]]; then echo "$key"; exit 0; fi
saved="$KIND_CACHE/node-base/kind-base-$KIND_VERSION-$key.tar"
if restore_image "$tag" "$key" "$saved"; then echo "$tag"; exit 0; fi

rootfs_tar="$("$HACK_KIND_DIR/rootfs.sh" node)"
kind_dir="$(go mod download -json sigs.k8s.io/kind@"$KIND_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
files="$kind_dir/images/base/files"

mkdir -p "$KIND_CACHE/node-base"
dir="$(mktemp -d "$KIND_CACHE/node-base/rootfs.XXXXXX")"
on_exit release_rootfs "$dir"
tar -C "$dir" -xf "$rootfs_tar"

log "applying kind $KIND_VERSION base files"
install -d -m 0755 "$dir/kind/bin" "$dir/LICENSES" "$dir/etc/kubernetes/manifests" "$dir/opt/cni/bin" "$dir/etc/cni/net.d"
install -m 0755 "$files"/usr/local/bin/* "$dir/usr/local/bin/"
install -m 0644 "$files"/kind/README.txt "$dir/kind/"
install -m 0755 "$files"/kind/bin/* "$dir/kind/bin/"
install -m 0644 "$files"/LICENSES/* "$dir/LICENSES/"
install -m 0644 "$files"/etc/crictl.yaml "$dir/etc/"
install -D -m 0644 "$files"/etc/containerd/config.toml "$dir/etc/containerd/config.toml"
install -m 0644 "$files"/etc/default/* "$dir/etc/default/"
install -m 0644 "$files"/etc/sysctl.d/* "$dir/etc/sysctl.d/"
install -m 0644 "$files"/etc/systemd/system/*.service "$dir/etc/systemd/system/"
install -d "$dir/etc/systemd/system/kubelet.service.d"
install -m 0644 "$files"/etc/systemd/system/kubelet.service.d/* "$dir/etc/systemd/system/kubelet.service.d/"

# Debian puts containerd in /usr/bin and the CNI plugins in /usr/lib/cni;
# kind's units and containerd config expect /usr/local/bin and /opt/cni/bin.
for b in containerd ctr containerd-shim-runc-v2; do ln -sf "/usr/bin/$b" "$dir/usr/local/bin/$b"; done
for p in host-local loopback ptp portmap bridge; do cp "$dir/usr/lib/cni/$p" "$dir/opt/cni/bin/$p"; done
install -m 0644 "$HACK_KIND_DIR/files/10-scorer-ptp.conflist" "$dir/etc/cni/net.d/"
# runc wrapper (no-op unless CAP_SYS_RESOURCE is missing from the bounding set)
install -m 0755 "$HACK_KIND_DIR/files/runc-wrapper" "$dir/usr/local/sbin/runc"

# containerd's base OCI spec with kind's product-files hook (as in kind's Dockerfile)
ctr oci spec \
  | jq '.hooks.createContainer[.hooks.createContainer| length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \
  | jq 'del(.process.rlimits)' >"$dir/etc/containerd/cri-base.json"

find "$dir/lib/systemd/system/sysinit.target.wants/" -name "systemd-tmpfiles-setup.service" -delete
rm -f "$dir"/lib/systemd/system/multi-user.target.wants/* \
  "$dir"/etc/systemd/system/*.wants/* \
  "$dir"/lib/systemd/system/local-fs.target.wants/* \
  "$dir"/lib/systemd/system/sockets.target.wants/*udev* \
  "$dir"/lib/systemd/system/sockets.target.wants/*initctl* \
  "$dir"/lib/systemd/system/basic.target.wants/*
echo "ReadKMsg=no" >>"$dir/etc/systemd/journald.conf"
ln -sf /lib/systemd/systemd "$dir/sbin/init"
chroot "$dir" systemctl enable kubelet.service containerd.service undo-mount-hacks.service 2>&1 | sed "s/^/  /" >&2
chroot "$dir" systemctl mask systemd-binfmt.service 2>&1 | sed "s/^/  /" >&2
[[ -L "$dir/etc/systemd/system/multi-user.target.wants/kubelet.service" ]] || die "systemctl enable failed"

# (docker 20.10's import rejects STOPSIGNAL; kind removes nodes with rm -f anyway)
log "docker import $tag"
tar -C "$dir" --numeric-owner -c . | docker import \
  --change 'ENV container=docker' \
  --change "LABEL $IMAGE_KEY_LABEL=$key" \
  --change 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' \
  - "$tag" >/dev/null
save_image "$tag" "$saved"
echo "$tag"
