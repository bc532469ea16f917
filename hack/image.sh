#!/usr/bin/env bash
# Build the scorer image offline: the base image if it is missing (hack/python-base-image.sh),
# the wheels (hack/wheels.sh), then `docker build`. Re-runs reuse the cached rootfs, the
# wheels and Docker's layer cache.
#
# Usage: hack/image.sh [--extra "PKG..."] [--requirements FILE] [TAG]     (default scorer:dev)
#   --extra "scikit-learn lightgbm"   the model's own libraries, on top of the lean default
#                                     (xgboost only); requirement specifiers, space-separated
#   --requirements FILE               the same from a requirements file, e.g. the
#                                     requirements.txt MLflow logs with a model; its `mlflow`
#                                     line is skipped (the image carries mlflow-skinny)
# Both may be given (and repeated); the packages reach the Dockerfile as the build argument
# EXTRA_PACKAGES and hack/wheels.sh downloads their wheels on the host.
# Env:   VERSION, REVISION, SOURCE    OCI label values (default: pyproject version, git HEAD,
#                                     git remote origin)
#        DOCKER_BUILD_ARGS            extra `docker build` arguments (word-split)
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

repo="$REPO_DIR"
extras=()
# requirements_file FILE: its requirement lines, one specifier each (comments, blank lines and
# mlflow itself dropped; whitespace inside a specifier removed, so it stays one word).
requirements_file() {
  local line
  [[ -r $1 ]] || die "cannot read requirements file $1"
  while IFS= read -r line || [[ -n $line ]]; do
    line="${line%%#*}"
    line="${line//[[:space:]]/}"
    [[ -n $line ]] || continue
    case "${line,,}" in
      -*) die "$1: pip options are not supported in extra requirements: $line" ;;
      mlflow | mlflow[=\<\>~!\;\[]* | mlflow[-_.]skinny | mlflow[-_.]skinny[=\<\>~!\;\[]*)
        log "$1: skipping $line (the image carries mlflow-skinny)" ;;
      *) extras+=("$line") ;;
    esac
  done <"$1"
}
tag=""
while (($#)); do
  case "$1" in
    --extra) read -ra words <<<"${2:?--extra needs a list of packages}"; extras+=("${words[@]}"); shift 2 ;;
    --requirements) requirements_file "${2:?--requirements needs a file}"; shift 2 ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) echo "unknown option: $1" >&2; exit 2 ;;
    *) [[ -z $tag ]] || { echo "one TAG only (got $tag and $1)" >&2; exit 2; }; tag="$1"; shift ;;
  esac
done
tag="${tag:-${IMAGE:-scorer:dev}}"
extra_packages="${extras[*]}"

if ! docker info >/dev/null 2>&1; then
  log "docker engine not answering; starting it with hack/docker-engine.sh"
  bash "$HACK_DIR/docker-engine.sh"
fi

# One build at a time on this machine (concurrent test sessions share the cache).
exec 9>"$SCORER_CACHE/image.lock"
flock 9

start=$SECONDS
bash "$HACK_DIR/python-base-image.sh"
bash "$HACK_DIR/wheels.sh" --extra "$extra_packages"

version="${VERSION:-$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$repo/pyproject.toml")}"
revision="${REVISION:-$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)}"
if [[ -z ${REVISION:-} ]] && [[ -n $(git -C "$repo" status --porcelain -- scorer pyproject.toml setup.py Dockerfile 2>/dev/null) ]]; then
  revision="$revision-dirty"
fi
# The repository URL: $SOURCE, else the git remote `origin` if it is a URL (credentials
# stripped), else unknown.
source_url="${SOURCE:-}"
if [[ -z $source_url ]]; then
  origin="$(git -C "$repo" remote get-url origin 2>/dev/null || true)"
  if [[ $origin =~ ^(https?|ssh|git):// ]]; then source_url="$(sed -E 's#://[^@/]*@#://#' <<<"$origin")"; fi
fi
source_url="${source_url:-unknown}"

# Without the buildx plugin the Docker CLI can only use the classic builder; the Dockerfile
# works with both.
if ! docker buildx version >/dev/null 2>&1; then
  export DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}"
fi

# The builder stage uses the same base plus binutils when python-base-image.sh made one
# (offline); otherwise the Dockerfile apt-gets binutils and gcc into the builder.
build_image="${BUILD_IMAGE_TAG:-scorer.local/python-build:3.11-slim-bookworm}"
builder_arg=()
if docker image inspect "$build_image" >/dev/null 2>&1; then
  builder_arg=(--build-arg "BUILDER_IMAGE=$build_image")
fi
read -ra docker_build_args <<<"${DOCKER_BUILD_ARGS:-}"

log "docker build -t $tag (version $version, revision $revision${extra_packages:+, extra packages: $extra_packages})"
docker build --force-rm --tag "$tag" \
  --build-arg VERSION="$version" \
  --build-arg REVISION="$revision" \
  --build-arg SOURCE="$source_url" \
  --build-arg EXTRA_PACKAGES="$extra_packages" \
  "${builder_arg[@]}" \
  "${docker_build_args[@]}" \
  "$repo"
log "built $tag in $((SECONDS - start)) s: $(docker image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}')"
