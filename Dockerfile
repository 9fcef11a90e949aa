# syntax=docker/dockerfile:1
# Three images from one file; docker-compose.yml builds each by its target (docs/deploy.md).
#
#   service    API, coordinator and migrations: the control plane, no torch (python slim)
#   dashboard  service + the dashboard's extras (Streamlit, plotly, pandas), still no torch
#   worker     a CUDA base + torch + the worker's extras; one container per GPU
#
#   docker build --target service -t regsearch-service .
#   docker build --target worker -t regsearch-worker .
#
# The worker takes torch's default Linux build (CUDA 13 for torch 2.13, NVIDIA driver >= 580).
# For an older driver pick a matching CUDA build and base, e.g.
#   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 \
#   --build-arg CUDA_IMAGE=nvidia/cuda:12.6.3-base-ubuntu24.04

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-base-ubuntu24.04

# -- the control plane ------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS service
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH \
    REGSEARCH_DATA_DIR=/var/lib/regsearch
RUN python -m venv /opt/venv \
    && useradd --system --uid 10001 --user-group --create-home --home-dir /home/regsearch regsearch \
    && mkdir -p /var/lib/regsearch && chown regsearch:regsearch /var/lib/regsearch
WORKDIR /app
COPY pyproject.toml README.md ./
COPY regsearch regsearch
COPY services services
COPY worker worker
COPY dashboard dashboard
# The core dependencies only; the build fails if anything pulled torch in.
RUN pip install "/app[s3]" \
    && python -c "import importlib.util as u, sys; sys.exit('torch in the service image' if u.find_spec('torch') else 0)"
# No .env in the image (.dockerignore): settings come from the container's environment.
WORKDIR /home/regsearch
USER regsearch
EXPOSE 8000
CMD ["regsearch", "api", "--host", "0.0.0.0", "--port", "8000"]

# -- the dashboard ----------------------------------------------------------------------------
FROM service AS dashboard
USER root
RUN pip install "/app[dashboard]" \
    && python -c "import importlib.util as u, sys; sys.exit('torch in the dashboard image' if u.find_spec('torch') else 0)"
USER regsearch
EXPOSE 8501
CMD ["regsearch", "dashboard", "--host", "0.0.0.0", "--port", "8501"]

# -- the GPU worker ---------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS worker
ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_INDEX_URL=
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH \
    REGSEARCH_DATA_DIR=/var/lib/regsearch \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    CUDA_DEVICE_ORDER=PCI_BUS_ID
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv \
    && useradd --system --uid 10001 --user-group --create-home --home-dir /home/regsearch regsearch \
    && mkdir -p /var/lib/regsearch && chown regsearch:regsearch /var/lib/regsearch
# torch first, in a layer of its own: it is most of the image and changes least often.
RUN pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$TORCH_SPEC"
WORKDIR /app
COPY pyproject.toml README.md ./
COPY regsearch regsearch
COPY services services
COPY worker worker
COPY dashboard dashboard
RUN pip install "/app[worker,s3]" \
    && python -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"

# One worker container per GPU. With GPU_SLOT_DIR set (docker-compose.yml does) and
# CUDA_VISIBLE_DEVICES unset, take the first GPU of this host that no other worker container
# holds: an flock on GPU_SLOT_DIR/gpuN.lock in a volume the host's workers share. The lock is
# held by the command itself (the descriptor survives exec) and dies with it.
COPY --chmod=755 <<'EOF' /usr/local/bin/regsearch-gpu-slot
#!/bin/sh
set -eu
if [ -n "${GPU_SLOT_DIR:-}" ] && [ -z "${CUDA_VISIBLE_DEVICES:-}" ]; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
  else
    gpus=$(ls /dev 2>/dev/null | grep -cE '^nvidia[0-9]+$' || true)
  fi
  if [ "${gpus:-0}" -eq 0 ]; then
    echo "regsearch-gpu-slot: no GPU visible in this container (NVIDIA container toolkit?)" >&2
    exit 1
  fi
  mkdir -p "$GPU_SLOT_DIR"
  i=0
  while [ "$i" -lt "$gpus" ]; do
    exec 9>>"$GPU_SLOT_DIR/gpu$i.lock"
    if flock -n 9; then
      echo "regsearch-gpu-slot: GPU $i of $gpus" >&2
      CUDA_VISIBLE_DEVICES=$i
      export CUDA_VISIBLE_DEVICES
      exec "$@"
    fi
    exec 9>&-
    i=$((i + 1))
  done
  echo "regsearch-gpu-slot: all $gpus GPU(s) of this host already have a worker; scale to at most $gpus" >&2
  exit 1
fi
exec "$@"
EOF

WORKDIR /home/regsearch
USER regsearch
ENTRYPOINT ["/usr/local/bin/regsearch-gpu-slot"]
CMD ["regsearch", "worker", "--device", "cuda"]
