#!/usr/bin/env bash
# The kind node image for $K8S_VERSION, assembled the way `kind build
# node-image` does it (run the base image, copy kubeadm/kubelet/kubectl to
# /usr/bin, write /kind/version and the CNI manifest, import the component
# images into the node's containerd, docker commit), but with every image
# coming from images.sh instead of a registry.
# Prints the image tag. Cached as a docker image and a saved tar.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tag="${KIND_NODE_IMAGE:-$IMAGE_PREFIX/kind-node:$K8S_VERSION}"
saved="$K8S_CACHE/kind-node-$K8S_VERSION.tar"
if docker image inspect "$tag" >/dev/null 2>&1; then echo "$tag"; exit 0; fi
if [[ -s "$saved" ]]; then
  log "docker load $saved"
  docker load -i "$saved" >/dev/null
  echo "$tag"; exit 0
fi

base="$("$HACK_KIND_DIR/node-base-image.sh")"
mapfile -t image_tars < <("$HACK_KIND_DIR/images.sh")
K8S_BIN="$K8S_CACHE/bin"

name="scorer-kind-build-$$"
docker run -d --name "$name" --entrypoint=sleep --security-opt seccomp=unconfined "$base" infinity >/dev/null
trap 'docker rm -f -v "$name" >/dev/null 2>&1 || true' EXIT
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
x bash -c 'p="$(cat /tmp/containerd.pid)"; kill "$p"
  for _ in $(seq 1 100); do
    [[ -e /proc/$p ]] && [[ "$(awk "{print \$3}" /proc/$p/stat 2>/dev/null)" != Z ]] || break
    sleep 0.2
  done
  rm -f /tmp/containerd.pid /tmp/containerd.log'

log "docker commit $tag"
docker commit \
  --change 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' \
  "$name" "$tag" >/dev/null
docker save -o "$saved.tmp" "$tag" && mv "$saved.tmp" "$saved"
echo "$tag"
