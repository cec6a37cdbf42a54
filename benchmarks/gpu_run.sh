#!/usr/bin/env bash
# The HPO GPU benchmark as one command on the lent GPU machine (see benchmarks/gpu_carry.py for
# the two calls and what they carry). Run from the repo root there, after the wheelhouse was
# installed into /tmp/site by the previous call. Extra arguments go to benchmarks/hpo_gpu.py.
# Results land in $OUT (the device tool's folder) or ./gpu-results elsewhere.
#
# CPU smoke test of the same path here:
#   PY=.venv/bin/python bash benchmarks/gpu_run.sh --limit 200 --eval-limit 0 --searches 2x1 \
#       --trainer-epochs 1 --gpus-per-trial 0 --cpus-per-trial 1
set -euo pipefail
py=${PY:-python3}
out=${OUT:-gpu-results}
mkdir -p "$out"
site=${GPU_SITE:-/tmp/site}
if [ -d .gpu/wheels ] && [ -d "$site" ]; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --target "$site" .gpu/wheels/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export MLFLOW_ALLOW_FILE_STORE=true HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv \
  | tee "$out/gpu.txt"
"$py" -c 'import torch, transformers, ray, mlflow; print("torch", torch.__version__, "transformers",
transformers.__version__, "ray", ray.__version__, "mlflow", mlflow.__version__)' | tee "$out/versions.txt"
mlruns=$(mktemp -d)
set -o pipefail
"$py" benchmarks/hpo_gpu.py --tokenized-dir .gpu/tokenized --model .gpu/model \
  --tracking-uri "file://$mlruns" --json-out "$out/hpo_gpu.json" "$@" 2>&1 | tee "$out/hpo_gpu.log"
