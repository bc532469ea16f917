#!/usr/bin/env bash
# The kind node image for $K8S_VERSION, assembled the way `kind build
# node-image` does it (run the base image, copy kubeadm/kubelet/kubectl to
# /usr/bin, write /kind/version and the CNI manifest, import the component
# images into the node's containerd, docker commit), but with every image
# coming from images.sh instead of a registry.
# Tagged ${KIND_NODE_IMAGE:-$IMAGE_PREFIX/kind-node:$K8S_VERSION}, labelled with its key (the
# tag, the Kubernetes version, the keys of the node base image, the component images and the
# binaries, this script and the CNI manifest) and saved to
# $KIND_CACHE/node/kind-node-$K8S_VERSION-<key>.tar.
# Prints "TAG SAVED_TAR"; `node-image.sh --key` prints the key only. The node base image and
# the component images are built only when the node image itself is not cached.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tag="${KIND_NODE_IMAGE:-$IMAGE_PREFIX/kind-node:$K8S_VERSION}"
key="$(cache_key "$tag" "$K8S_VERSION" \
  "node-base $("$HACK_KIND_DIR/node-base-image.sh" --key)" \
  "images $("$HACK_KIND_DIR/images.sh" --key)" \
  "k8s-binaries $("$HACK_KIND_DIR/k8s-binaries.sh" --key)" \
  -f "${BASH_SOURCE[0]}" -f "$HACK_KIND_DIR/files/default-cni.yaml")"
if [[ ${1:-} == --key ]]; then echo "$key"; exit 0; fi
saved="$KIND_CACHE/node/kind-node-$K8S_VERSION-$key.tar"
if restore_image "$tag" "$key" "$saved"; then echo "$tag $saved"; exit 0; fi

log "building the node base image"
base="$("$HACK_KIND_DIR/node-base-image.sh")"
log "building the component images"
mapfile -t image_tars < <("$HACK_KIND_DIR/images.sh")
((${#image_tars[@]} == 7)) || die "images.sh gave ${#image_tars[@]} images, not 7"
K8S_BIN="$("$HACK_KIND_DIR/k8s-binaries.sh")"

name="scorer-kind-build-$$"
docker run -d --name "$name" --entrypoint=sleep --security-opt seccomp=unconfined "$base" infinity >/dev/null
on_exit docker rm -f -v "$name"
x() { docker exec -i "$name" "$@"; }

for b in kubeadm kubelet kubectl; do
  docker cp "$K8S_BIN/$b" "$name:/usr/bin/$b"
  x chown root:root "/usr/bin/$b"
  x chmod 0755 "/usr/bin/$b"
done
x mkdir -p /kind/manifests
printf '%s' "$K8S_VERSION" | x tee /kind/version >/dev/null
x tee /kind/manifests/default-cni.yaml <"$HACK_KIND_DIR/files/default-cni.yaml" >/dev/null

log "importing ${#image_tars[@]} images into the node's containerd"
x bash -c 'nohup containerd >/tmp/containerd.log 2>&1 & echo $! >/tmp/containerd.pid'
for _ in $(seq 1 30); do x ctr version >/dev/null 2>&1 && break; sleep 1; done
for t in "${image_tars[@]}"; do
  x ctr --namespace=k8s.io images import --all-platforms --no-unpack --digests - <"$t" >/dev/null
done
x ctr --namespace=k8s.io images ls -q | grep -v '^sha256:' >&2
# stop containerd and wait until it has exited (it stays a zombie: PID 1 is sleep)
x bash -s <<'IN_NODE'
p="$(cat /tmp/containerd.pid)"; kill "$p"
for _ in $(seq 1 100); do
  [[ -e /proc/$p ]] && [[ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ]] || break
  sleep 0.2
done
rm -f /tmp/containerd.pid /tmp/containerd.log
IN_NODE

log "docker commit $tag"
docker commit \
  --change 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' \
  --change "LABEL $IMAGE_KEY_LABEL=$key" \
  "$name" "$tag" >/dev/null
save_image "$tag" "$saved"
echo "$tag $saved"
