# Training/steps image: every pipeline step (`python -m steps.<name>`), the cache-key and RayJob
# helpers (`python -m pipelines.<name>`) and the Ray head/worker of the KubeRay RayJob.
# Build from the repo root:
#   docker build -f docker/train.Dockerfile --build-arg GIT_COMMIT=$(git rev-parse HEAD) \
#     -t emotion-hpo-train:$(git rev-parse HEAD) .
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# torch first and on its own: the largest layer, and the one that changes least often.
RUN pip install torch==2.13.0
COPY pyproject.toml README.md ./
COPY shared/ shared/
COPY steps/ steps/
COPY pipelines/ pipelines/
COPY serving/ serving/
RUN pip install .

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="emotion-hpo-train" \
      org.opencontainers.image.description="Steps of the emotion-hpo pipeline (dvc-fetch, tokenize, hpo, register, deploy)"
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
