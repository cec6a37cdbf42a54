# Inference server image: `python -m serving` (FastAPI + Uvicorn) on CPU, non-root, with a healthcheck.
# Build from the repo root: docker build -f docker/serving.Dockerfile -t emotion-serving:dev .
# Run: docker run -p 8000:8000 -e SERVE_MODEL_URI=models:/emotion-classifier@champion \
#        -e MLFLOW_TRACKING_URI=http://mlflow:5000 emotion-serving:dev
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# CPU-only torch on its own layer (largest, changes least); then only what serving imports:
# mlflow-skinny resolves models:/ and runs:/ URIs without the tracking server's dependencies;
# onnx + onnxruntime run the default backend (onnx-int8: exported and quantized once per model, at start).
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
# hadolint ignore=DL3059
RUN pip install \
        transformers==5.23.0 \
        safetensors==0.8.0 \
        fastapi==0.163.2 \
        "uvicorn[standard]==0.54.0" \
        pydantic-settings==2.16.3 \
        prometheus-client==0.26.0 \
        typer==0.29.1 \
        mlflow-skinny==3.17.2 \
        boto3==1.43.117 \
        pyyaml==6.0.4 \
        onnx==1.23.2 \
        onnxruntime==1.32.0

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="emotion-serving" \
      org.opencontainers.image.description="Emotion classifier inference server (FastAPI + Uvicorn, CPU)"
# The commit the image is built from (.github/workflows/images.yaml passes it): the code version
# `shared.lineage` records in MLflow (an image has no .git). Building without it fails.
ARG GIT_COMMIT
RUN test -n "${GIT_COMMIT}" || (echo "build with --build-arg GIT_COMMIT=<full commit sha>" >&2 && exit 1)
LABEL org.opencontainers.image.revision="${GIT_COMMIT}"
ENV GIT_COMMIT=${GIT_COMMIT}
RUN groupadd --gid 10001 app && useradd --uid 10001 --gid app --create-home --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY shared/ shared/
COPY serving/ serving/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HOME=/tmp/hf \
    HF_HUB_OFFLINE=1 \
    SERVE_HOST=0.0.0.0 \
    SERVE_PORT=8000 \
    SERVE_CACHE_DIR=/tmp/model-cache
USER 10001
EXPOSE 8000
# Healthy = model loaded and warmed up (/ready); liveness alone is /health.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('SERVE_PORT', '8000')}/ready\", timeout=4)"]
CMD ["python", "-m", "serving"]
