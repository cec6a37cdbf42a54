# The two commands a newcomer needs: `make demo` and `make test`. Everything bootstraps itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Where torch comes from (empty: the default index). CI sets PyTorch's CPU-only wheel index.
TORCH_INDEX_URL ?=
# The dataset: $EMOTION_DATASET_DIR if set, else ../shared/data/emotion, else dair-ai/emotion from the
# Hugging Face Hub (pinned, verified; HF_ENDPOINT / HF_HUB_OFFLINE honoured): shared/data_registry/source.py.
EMOTION_DATASET_DIR ?=
LOCAL_DIR ?= $(or $(EMOTION_LOCAL_DIR),.local)
# The steps, the runner and the server read their local state folder from EMOTION_LOCAL_DIR.
LOCAL := EMOTION_LOCAL_DIR=$(LOCAL_DIR)
export EMOTION_DATASET_DIR

.PHONY: help install demo resume test test-fast lint compile registry stop status mlflow-ui clean images

help:
	@echo "make demo       run the whole pipeline locally (data registry, HPO, register, serve)"
	@echo "make test       lint + the full test suite (what CI runs)"
	@echo "make test-fast  lint + fast tests only"
	@echo "make resume     resume the last local run from the step that failed or was interrupted"
	@echo "make stop       stop the local inference server (make status: what is deployed)"
	@echo "make mlflow-ui  open the MLflow UI on http://127.0.0.1:5000"
	@echo "make compile    recompile the Argo YAML from the Hera definitions"
	@echo "make images     build the train and serving images from the commit (Docker or Podman)"

# KServe's v2 REST client for the protocol tests, without its dependency tree: `kserve` pins
# pandas<3, protobuf<7 and psutil<6 and would downgrade the environment (see pyproject.toml).
KSERVE_CLIENT := kserve==0.21.0 cloudevents==1.13.0 deprecation==2.1.0 timing-asgi==0.3.2 grpc-interceptor==0.15.4

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps $(KSERVE_CLIENT)
	@touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: $(STAMP) lint
	$(PY) -m pytest

test-fast: $(STAMP) lint
	$(PY) -m pytest -m "not slow"

# Both images from HEAD, tagged with it: emotion-hpo-train:<sha>, emotion-hpo-serving:<sha>
# (docker/build-images.sh: CONTAINER_ENGINE, PYTHON_IMAGE, TORCH_WHEEL_DIR, TORCH_SPEC, TORCH_PIP_ARGS,
# BUILD_CA_BUNDLE; without a registry the base is docker/base-image.sh's Debian stand-in).
images:
	bash docker/build-images.sh

compile: $(STAMP)
	$(PY) -m pipelines.compile

registry: $(STAMP)
	$(LOCAL) $(PY) -m shared.data_registry build --registry $(LOCAL_DIR)/data-registry

demo: $(STAMP) registry
	$(LOCAL) $(PY) -m pipelines.run_local pipelines/emotion-hpo.yaml --profile demo

resume: $(STAMP)
	$(LOCAL) $(PY) -m pipelines.run_local pipelines/emotion-hpo.yaml --resume-last

stop: $(STAMP)
	$(LOCAL) $(PY) -m steps.deploy stop

status: $(STAMP)
	$(LOCAL) $(PY) -m steps.deploy status

mlflow-ui: $(STAMP)
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(LOCAL_DIR)/mlflow.db --host 127.0.0.1 --port 5000

clean:
	rm -rf $(LOCAL_DIR)
