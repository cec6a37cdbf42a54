"""Deploy step: health-gated rollout of the inference server, locally (Gunicorn) or on Kubernetes."""
