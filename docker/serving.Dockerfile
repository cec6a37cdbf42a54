# Slim inference server image: `python -m serving` (FastAPI + Uvicorn) on CPU, non-root, no torch.
# It serves the serving artifact register builds (the ONNX graph, tag `serving_artifact_uri`), run by
# ONNX Runtime; the model comes from MLflow at start. A model registered without one needs torch
# to export it: serve it from the train image (emotion-hpo-train), which has torch.
# Build from the commit: `make images`, or by hand from the repo root:
#   docker build -f docker/serving.Dockerfile --build-arg GIT_COMMIT=$(git rev-parse HEAD) -t emotion-serving:dev .
# Run as the Deployment does (uid 10001, read-only root, /cache and /tmp writable):
#   docker run --read-only --user 10001:10001 -v serving-cache:/cache --tmpfs /tmp -p 8000:8000 \
#     -e SERVE_MODEL_URI=models:/emotion-classifier@champion -e MLFLOW_TRACKING_URI=http://mlflow:5000 \
#     -e SERVE_CACHE_DIR=/cache/serving -e HOME=/tmp emotion-serving:dev
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Only what serving imports, no torch and no transformers: ONNX Runtime runs the graph; `tokenizers`
# runs the model's tokenizer.json (serving/fast_tokenizer.py); mlflow-skinny resolves models:/ and runs:/ URIs without
# the tracking server's dependencies; boto3 reads S3 artifact stores. Uvicorn with uvloop and
# httptools (the server's protocol), without the reload/websocket extras. Left out of the image:
# pip and setuptools (nothing installs at run time).
RUN pip install \
        onnxruntime==1.32.0 \
        tokenizers==0.23.3 \
        fastapi==0.163.2 \
        uvicorn==0.54.0 \
        uvloop==0.23.0 \
        httptools==0.9.0 \
        gunicorn==26.2.0 \
        uvicorn-worker==0.4.0 \
        pydantic-settings==2.16.3 \
        prometheus-client==0.26.0 \
        typer==0.29.1 \
        mlflow-skinny==3.17.2 \
        boto3==1.43.117 \
        pyyaml==6.0.4 \
        psutil==7.2.2 \
        httpx==0.28.1 \
        rich==15.0.0 \
    && pip uninstall -y pip setuptools \
    && find /opt/venv -name __pycache__ -type d -prune -exec rm -rf {} +

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="emotion-serving" \
      org.opencontainers.image.description="Emotion classifier inference server (FastAPI + Uvicorn + ONNX Runtime, CPU)"
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
    SERVE_HOST=0.0.0.0 \
    SERVE_PORT=8000 \
    SERVE_CACHE_DIR=/tmp/model-cache
USER 10001
EXPOSE 8000
# Healthy = model loaded and warmed up (/ready); liveness alone is /health.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('SERVE_PORT', '8000')}/ready\", timeout=4)"]
CMD ["python", "-m", "serving"]
