#!/usr/bin/env bash
# Container images for the Kubernetes $K8S_VERSION control plane and add-ons,
# tagged exactly as `kubeadm config images list` expects, built without any
# registry (docker import of small root filesystems):
#   kube-apiserver, kube-controller-manager, kube-scheduler  (static binary)
#   kube-proxy                                                (+ iptables, conntrack)
#   etcd, pause, coredns
# Each image is saved to $KIND_CACHE/images/$K8S_VERSION-<key>/<name>.tar (what the node image
# is made from), the key hashing the versions, the binaries' and the tools rootfs' keys, this
# script, tools.sh (etcd, coredns, pause; etcd's version follows from K8S_VERSION) and the files
# copied in. Prints the saved tar paths; `images.sh --key` prints the key only.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

key="$(cache_key "$K8S_VERSION" "$COREDNS_VERSION" "$K8S_GO_TOOLCHAIN" \
  "k8s-binaries $("$HACK_KIND_DIR/k8s-binaries.sh" --key)" \
  "rootfs tools $("$HACK_KIND_DIR/rootfs.sh" --key tools)" \
  -f "${BASH_SOURCE[0]}" -f "$HACK_KIND_DIR/tools.sh" \
  -f "$HACK_KIND_DIR/files/pause.c" -f "$HACK_KIND_DIR/files/iptables-wrapper")"
if [[ ${1:-} == --key ]]; then echo "$key"; exit 0; fi
IMAGE_CACHE="$KIND_CACHE/images/$K8S_VERSION-$key"
mkdir -p "$IMAGE_CACHE"

K8S_BIN="$("$HACK_KIND_DIR/k8s-binaries.sh")"
kubeadm="$K8S_BIN/kubeadm"
mapfile -t wanted < <("$kubeadm" config images list --kubernetes-version "$K8S_VERSION" 2>/dev/null)
image_for() { printf '%s\n' "${wanted[@]}" | grep -E "/$1:" | head -n1; }

# rootfs skeleton shared by the static images (as in distroless/static)
skeleton() {
  local d="$1"
  install -d -m 0755 "$d/etc" "$d/usr/local/bin" "$d/var/run"
  install -d -m 1777 "$d/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$d/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$d/etc/group"
  echo 'hosts: files dns' >"$d/etc/nsswitch.conf"
}

# make_image NAME TAG ENTRYPOINT_JSON BASE(static|tools) SRC:DST...
make_image() {
  local name="$1" tag="$2" entry="$3" base="$4"; shift 4
  local saved="$IMAGE_CACHE/$name.tar"
  # The saved tar is the artefact (node-image.sh imports it into the node's
  # containerd); the docker image is only the means to write it.
  if [[ -s "$saved" ]]; then echo "$saved"; return; fi
  local d; d="$(mktemp -d "$IMAGE_CACHE/$name.XXXXXX")"
  on_exit rm -rf "$d"
  if [[ "$base" == tools ]]; then
    tar -C "$d" -xf "$("$HACK_KIND_DIR/rootfs.sh" tools)"
  else
    skeleton "$d"
  fi
  local pair a
  for pair in "$@"; do install -D -m 0755 "${pair%%:*}" "$d/${pair#*:}"; done
  if [[ "$base" == tools ]]; then
    for a in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
      ln -sf /usr/sbin/iptables-wrapper "$d/etc/alternatives/$a"
    done
  fi
  log "docker import $tag"
  tar -C "$d" --numeric-owner -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "LABEL $IMAGE_KEY_LABEL=$key" \
    --change "ENTRYPOINT $entry" - "$tag" >/dev/null
  rm -rf "$d"
  save_image "$tag" "$saved"
  echo "$saved"
}

etcd_tag="$(image_for etcd)"                 # registry.k8s.io/etcd:3.5.24-0
etcd_version="${etcd_tag##*:}"; etcd_version="${etcd_version%-*}"
coredns_tag="$(image_for coredns)"           # registry.k8s.io/coredns/coredns:v1.11.3
[[ "${coredns_tag##*:}" == "$COREDNS_VERSION" ]] || log "warning: kubeadm wants $coredns_tag, building $COREDNS_VERSION"
# pause: the node's containerd sandbox_image (kind's config.toml), which kubeadm also lists
pause_tag="$(image_for pause)"

for c in kube-apiserver kube-controller-manager kube-scheduler; do
  make_image "$c" "$(image_for "$c")" "[\"/usr/local/bin/$c\"]" static "$K8S_BIN/$c:usr/local/bin/$c"
done
make_image kube-proxy "$(image_for kube-proxy)" '["/usr/local/bin/kube-proxy"]' tools \
  "$K8S_BIN/kube-proxy:usr/local/bin/kube-proxy" "$HACK_KIND_DIR/files/iptables-wrapper:usr/sbin/iptables-wrapper"
make_image etcd "$etcd_tag" '["/usr/local/bin/etcd"]' static "$("$HACK_KIND_DIR/tools.sh" etcd "$etcd_version"):usr/local/bin/etcd"
make_image pause "$pause_tag" '["/pause"]' static "$("$HACK_KIND_DIR/tools.sh" pause):pause"
make_image coredns "$coredns_tag" '["/coredns"]' static "$("$HACK_KIND_DIR/tools.sh" coredns):coredns"
