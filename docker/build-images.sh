#!/usr/bin/env bash
# Build both images from a commit, tagged with it: emotion-hpo-train:<sha> and emotion-hpo-serving:<sha>.
#
#   docker/build-images.sh [COMMIT]      default: HEAD (the context is `git archive COMMIT`, so
#                                        uncommitted changes are never baked into an image)
#
# Engine: $CONTAINER_ENGINE (docker or podman), else podman, else a running Docker (engine.sh).
# Base: $PYTHON_IMAGE, else the official python:3.11.11-slim-bookworm when it is present or can be
# pulled, else the air-gapped stand-in made by docker/base-image.sh (Debian bookworm's Python 3.11).
# Torch for the train image: the CPU wheel from PyTorch's CPU index; TORCH_WHEEL_DIR=DIR takes it
# from a folder of wheels instead (podman only: bind-mounted into the build); TORCH_SPEC and
# TORCH_PIP_ARGS are passed through (the CUDA build for a GPU image: see train.Dockerfile).
# BUILD_CA_BUNDLE=FILE: the CA bundle the build's downloads trust (podman only: bind-mounted over
# the base's /etc/ssl/certs/ca-certificates.crt), for a network that re-signs TLS with its own CA.
# IMAGES="train serving" picks which to build. Prints the built tags, one per line, last.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=docker/engine.sh
source "$here/engine.sh"

commit=$(git -C "$repo" rev-parse "${1:-HEAD}^{commit}")
official=python:3.11.11-slim-bookworm
standin=localhost/emotion-python-base:3.11-bookworm-$(sha256sum "$here/base-image.sh" | cut -c1-12)
if [[ -n "${PYTHON_IMAGE:-}" ]]; then
    base=$PYTHON_IMAGE
elif engine image inspect "$official" >/dev/null 2>&1 \
    || timeout "${PULL_TIMEOUT_S:-60}" "$CONTAINER_ENGINE" "${ENGINE_ARGS[@]}" pull -q "docker.io/library/$official" >/dev/null 2>&1; then
    base=$official
else
    echo "no registry answers for $official: using the air-gapped base $standin (docker/base-image.sh)" >&2
    bash "$here/base-image.sh" "$standin" >&2
    base=$standin
fi

context=$(mktemp -d /var/tmp/emotion-images.XXXXXX)
trap 'rm -rf "$context"' EXIT
git -C "$repo" archive "$commit" | tar -x -C "$context"

common=(--network host --build-arg "PYTHON_IMAGE=$base" --build-arg "GIT_COMMIT=$commit")
if [[ -n "${BUILD_CA_BUNDLE:-}" ]]; then
    [[ "$(basename "$CONTAINER_ENGINE")" == podman* ]] \
        || { echo "BUILD_CA_BUNDLE needs podman (docker build cannot bind-mount a file)" >&2; exit 2; }
    common+=(-v "$(realpath "$BUILD_CA_BUNDLE"):/etc/ssl/certs/ca-certificates.crt:ro")
fi
train_args=()
if [[ -n "${TORCH_WHEEL_DIR:-}" ]]; then
    [[ "$(basename "$CONTAINER_ENGINE")" == podman* ]] \
        || { echo "TORCH_WHEEL_DIR needs podman (docker build cannot bind-mount a folder)" >&2; exit 2; }
    train_args+=(-v "$(cd "$TORCH_WHEEL_DIR" && pwd):/wheels:ro" --build-arg "TORCH_PIP_ARGS=--find-links /wheels")
fi
[[ -n "${TORCH_SPEC:-}" ]] && train_args+=(--build-arg "TORCH_SPEC=$TORCH_SPEC")
[[ -n "${TORCH_PIP_ARGS:-}" ]] && train_args+=(--build-arg "TORCH_PIP_ARGS=$TORCH_PIP_ARGS")

built=()
for image in ${IMAGES:-train serving}; do
    case $image in
        train) name=emotion-hpo-train; extra=("${train_args[@]}") ;;
        serving) name=emotion-hpo-serving; extra=() ;;
        *) echo "unknown image $image (train, serving)" >&2; exit 2 ;;
    esac
    echo "building $name:$commit from $base" >&2
    engine build "${common[@]}" "${extra[@]}" -f "$context/docker/$image.Dockerfile" -t "$name:$commit" "$context" >&2
    built+=("$name:$commit")
done
printf '%s\n' "${built[@]}"
