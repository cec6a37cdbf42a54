# Training/steps image: every pipeline step (`python -m steps.<name>`), the cache-key and RayJob
# helpers (`python -m pipelines.<name>`) and the Ray head/worker of the KubeRay RayJob.
# Build from the commit: `make images` (docker/build-images.sh), or by hand from the repo root:
#   docker build -f docker/train.Dockerfile --build-arg GIT_COMMIT=$(git rev-parse HEAD) \
#     -t emotion-hpo-train:$(git rev-parse HEAD) .
# PYTHON_IMAGE: the official image by default; docker/base-image.sh makes the air-gapped stand-in.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# torch first and on its own: the largest layer, and the one that changes least often. Where it
# comes from is a build argument, never pip's default (PyPI's torch for Linux is the multi-GB CUDA
# build): CPU images take the CPU wheel from PyTorch's CPU index (the default); GPU images pass
#   --build-arg TORCH_SPEC=torch==2.13.0 --build-arg TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cu128"
# and an air-gapped build mounts a folder holding the CPU wheel (podman build -v DIR:/wheels:ro)
# with TORCH_PIP_ARGS="--find-links /wheels".
ARG TORCH_SPEC=torch==2.13.0+cpu
ARG TORCH_PIP_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu"
# hadolint ignore=SC2086,DL3013
RUN pip install ${TORCH_PIP_ARGS} "${TORCH_SPEC}"
# The project's dependencies on their own layer (read from pyproject.toml), so a code change
# rebuilds only the small layer below.
COPY pyproject.toml ./
# hadolint ignore=DL3059
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt
COPY README.md ./
COPY shared/ shared/
COPY steps/ steps/
COPY pipelines/ pipelines/
COPY serving/ serving/
# hadolint ignore=DL3059
RUN pip install --no-deps .

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="emotion-hpo-train" \
      org.opencontainers.image.description="Steps of the emotion-hpo pipeline (dvc-fetch, tokenize, hpo, register, deploy)"
# git: DVC and the cache-key step read the data registry's git repository. The pod's user (10001)
# need not own it (a volume, a local run's folder), so git trusts repositories of any owner.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/* \
    && git config --system --add safe.directory '*'
# The commit the image is built from (.github/workflows/images.yaml passes it): the code version
# `shared.lineage` records in MLflow (an image has no .git). Building without it fails.
ARG GIT_COMMIT
RUN test -n "${GIT_COMMIT}" || (echo "build with --build-arg GIT_COMMIT=<full commit sha>" >&2 && exit 1)
LABEL org.opencontainers.image.revision="${GIT_COMMIT}"
ENV GIT_COMMIT=${GIT_COMMIT}
RUN groupadd --gid 10001 app && useradd --uid 10001 --gid app --create-home --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HOME=/tmp/hf \
    MPLCONFIGDIR=/tmp/matplotlib
WORKDIR /home/app
USER 10001
CMD ["python", "-m", "steps.hpo", "--help"]
