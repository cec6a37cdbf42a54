# Sourced by the image scripts: `engine ARGS...` runs the container engine.
# $CONTAINER_ENGINE (docker or podman) when set; else podman when installed; else docker when its
# daemon answers (a docker client without an engine does not count). Podman runs with runc when
# it is installed: Debian's default crun fails on hosts with hybrid cgroups.
if [[ -z "${CONTAINER_ENGINE:-}" ]]; then
    if command -v podman >/dev/null; then
        CONTAINER_ENGINE=podman
    elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
        CONTAINER_ENGINE=docker
    else
        echo "no container engine: install podman (apt-get install podman runc) or start Docker" >&2
        exit 2
    fi
fi
ENGINE_ARGS=()
if [[ "$(basename "$CONTAINER_ENGINE")" == podman* ]] && command -v runc >/dev/null; then
    ENGINE_ARGS=(--runtime "$(command -v runc)")
fi
engine() { "$CONTAINER_ENGINE" "${ENGINE_ARGS[@]}" "$@"; }
export CONTAINER_ENGINE
