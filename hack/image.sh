#!/usr/bin/env bash
# Build the scorer image offline: the base image if it is missing (hack/python-base-image.sh), the
# wheels (hack/wheels.sh), then `docker build`. Re-runs reuse the cached rootfs, the wheels
# and Docker's layer cache.
#
# Usage: hack/image.sh [TAG]          (default scorer:dev)
# Env:   VERSION, REVISION, SOURCE    OCI label values (default: pyproject version, git HEAD,
#                                     git remote origin)
#        DOCKER_BUILD_ARGS            extra `docker build` arguments (word-split)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tag="${1:-${IMAGE:-scorer:dev}}"
log() { printf '[image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if ! docker info >/dev/null 2>&1; then
  if [[ -f $repo/hack/docker-engine.sh ]]; then
    log "docker engine not answering; starting it with hack/docker-engine.sh"
    bash "$repo/hack/docker-engine.sh"
  else
    log "docker engine not answering"; exit 1
  fi
fi

# One build at a time on this machine (concurrent test sessions share ./wheels and the cache).
lock_dir="${SCORER_CACHE:-$HOME/.cache/scorer}"
mkdir -p "$lock_dir"
exec 9>"$lock_dir/image.lock"
flock 9

start=$SECONDS
bash "$repo/hack/python-base-image.sh"
bash "$repo/hack/wheels.sh"

version="${VERSION:-$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$repo/pyproject.toml")}"
revision="${REVISION:-$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)}"
if [[ -z ${REVISION:-} ]] && [[ -n $(git -C "$repo" status --porcelain -- scorer pyproject.toml Dockerfile 2>/dev/null) ]]; then
  revision="$revision-dirty"
fi
# The repository URL: $SOURCE, else the git remote `origin` if it is a URL (credentials
# stripped), else unknown.
source_url="${SOURCE:-}"
if [[ -z $source_url ]]; then
  origin="$(git -C "$repo" remote get-url origin 2>/dev/null || true)"
  [[ $origin =~ ^(https?|ssh|git):// ]] && source_url="$(sed -E 's#://[^@/]*@#://#' <<<"$origin")"
fi
source_url="${source_url:-unknown}"

# Without the buildx plugin the Docker CLI can only use the classic builder; the Dockerfile
# works with both.
if ! docker buildx version >/dev/null 2>&1; then
  export DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}"
fi

# The builder stage uses the same base plus binutils when python-base-image.sh made one (offline);
# otherwise the Dockerfile apt-gets binutils into the builder.
build_image="${BUILD_IMAGE_TAG:-scorer.local/python-build:3.11-slim-bookworm}"
builder_arg=()
if docker image inspect "$build_image" >/dev/null 2>&1; then
  builder_arg=(--build-arg "BUILDER_IMAGE=$build_image")
fi

log "docker build -t $tag (version $version, revision $revision)"
# shellcheck disable=SC2086
docker build --force-rm --tag "$tag" \
  --build-arg VERSION="$version" \
  --build-arg REVISION="$revision" \
  --build-arg SOURCE="$source_url" \
  "${builder_arg[@]}" \
  ${DOCKER_BUILD_ARGS:-} \
  "$repo"
log "built $tag in $((SECONDS - start)) s: $(docker image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}')"
