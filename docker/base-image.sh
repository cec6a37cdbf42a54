#!/usr/bin/env bash
# The air-gapped stand-in for the official Python image: Debian bookworm's own python3 (3.11, the
# minor version of python:3.11-slim-bookworm) made with debootstrap from a Debian mirror, imported
# into the container engine. Used by `make images` when no registry answers for the official one.
#
#   docker/base-image.sh [TAG]        default TAG: emotion-python-base:3.11-bookworm-<script digest>
#                                     (a change of this script makes a new base)
#
# Needs root, debootstrap and a reachable Debian mirror (DEBIAN_MIRROR, default deb.debian.org).
# The engine is $CONTAINER_ENGINE, else podman, else docker. Idempotent: an existing TAG is kept
# (BASE_REBUILD=1 makes it again).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
TAG=${1:-emotion-python-base:3.11-bookworm-$(sha256sum "$here/base-image.sh" | cut -c1-12)}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
# shellcheck source=docker/engine.sh
source "$here/engine.sh"

if [[ -z "${BASE_REBUILD:-}" ]] && engine image inspect "$TAG" >/dev/null 2>&1; then
    echo "base image $TAG exists"
    exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is not installed (apt-get install debootstrap)" >&2; exit 2; }

root=$(mktemp -d /var/tmp/emotion-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
# minbase + what a Python image has: python3 with venv and pip's needs, CA certificates, and
# `python` on the PATH (python-is-python3) as in the official image.
debootstrap --variant=minbase \
    --include=python3,python3-venv,python-is-python3,ca-certificates,netbase,tzdata \
    "$SUITE" "$root" "$MIRROR"
# what an image does not need: apt lists, caches, docs and man pages, glibc's iconv modules (Python
# has its own codecs), Python's 2to3 and pydoc data
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/* "$root"/usr/share/info/* \
    "$root"/usr/lib/x86_64-linux-gnu/gconv "$root"/usr/lib/python3.11/lib2to3 \
    "$root"/usr/lib/python3.11/pydoc_data
python_version=$(chroot "$root" python --version)
echo "base python: $python_version"
[[ "$python_version" == "Python 3.11."* ]] || { echo "expected Python 3.11, got $python_version" >&2; exit 1; }
tar -C "$root" --numeric-owner -c . | engine import \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
    --message "debootstrap $SUITE from $MIRROR with python3 (docker/base-image.sh)" - "$TAG"
echo "base image $TAG built"
