# Three images from one file; docker-compose.yml builds each by its target (docs/deploy.md).
#
#   service    API, coordinator and migrations: the control plane, no torch (python slim)
#   dashboard  the same + the dashboard's extras (Streamlit, plotly, pandas), still no torch
# (both on control-plane, the stage with their common dependencies)
#   worker     a CUDA base + torch + the worker's extras; one container per GPU
#
#   docker build --target service -t regsearch-service .
#   docker build --target worker -t regsearch-worker .
#
# Plain Dockerfile syntax only (no "syntax" frontend line, no heredocs, no COPY --chmod): the
# classic builder, BuildKit and buildah/podman all build it. deploy/ci-compose.sh builds all
# three with the classic builder.
#
# Build args (docs/deploy.md, "Images and build args"):
#   PYTHON_IMAGE     the control plane's base: any Debian-like image with python3 >= 3.11 and
#                    python3-venv (a site mirror, or a local one: deploy/debian-base.sh)
#   CUDA_IMAGE       the worker's base; for a CPU worker, any such Debian-like image too
#   TORCH_SPEC       what pip installs for torch (default: torch's default Linux build, CUDA 13
#                    for torch 2.13, NVIDIA driver >= 580)
#   TORCH_INDEX_URL  where pip looks for it instead of the registry, e.g. a CUDA/CPU wheel index
#   TORCH_FIND_LINKS a page or folder URL of wheels pip also considers (a CPU wheel served from
#                    the build host: deploy/ci-compose.sh)
# For an older driver pick a matching CUDA build and base, e.g.
#   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 \
#   --build-arg CUDA_IMAGE=nvidia/cuda:12.6.3-base-ubuntu24.04
# Extra CA certificates (a TLS-inspecting proxy, a private S3 endpoint): put the *.crt files in
# deploy/ca-certificates/ before building; pip in the build and the images trust them.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-base-ubuntu24.04

# -- the dependencies of each image, as requirement lists ---------------------------------------
# The images copy these lists, not pyproject.toml, before they install: a change to pyproject.toml
# that leaves the dependencies alone (a tool's settings) keeps the dependency layers' cache.
FROM ${PYTHON_IMAGE} AS requirements
COPY pyproject.toml deploy/requirements.py /tmp/
RUN python3 /tmp/requirements.py /tmp/pyproject.toml s3 > /tmp/control-plane.txt \
    && python3 /tmp/requirements.py /tmp/pyproject.toml dashboard > /tmp/dashboard.txt \
    && python3 /tmp/requirements.py /tmp/pyproject.toml worker s3 > /tmp/worker.txt

# -- the control plane ------------------------------------------------------------------------
# Its dependencies, shared by service and dashboard: a code change rebuilds neither's.
FROM ${PYTHON_IMAGE} AS control-plane
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PATH=/opt/venv/bin:$PATH \
    REGSEARCH_DATA_DIR=/var/lib/regsearch
COPY deploy/ca-certificates/ /usr/local/share/ca-certificates/regsearch-site/
COPY deploy/regsearch-healthcheck /usr/local/bin/regsearch-healthcheck
RUN chmod 755 /usr/local/bin/regsearch-healthcheck \
    && update-ca-certificates \
    && python3 -m venv /opt/venv \
    && useradd --system --uid 10001 --user-group --create-home --home-dir /home/regsearch regsearch \
    && mkdir -p /var/lib/regsearch && chown regsearch:regsearch /var/lib/regsearch
WORKDIR /app
# The core dependencies only; the build fails if anything pulled torch in.
COPY --from=requirements /tmp/control-plane.txt /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt \
    && python -c "import importlib.util as u, sys; sys.exit('torch in the service image' if u.find_spec('torch') else 0)"

# -- the API, the coordinator, the migrations -------------------------------------------------
FROM control-plane AS service
COPY pyproject.toml README.md ./
COPY regsearch regsearch
COPY services services
COPY worker worker
COPY dashboard dashboard
RUN pip install --no-deps "/app[s3]" \
    && python -c "import importlib.util as u, sys; sys.exit('torch in the service image' if u.find_spec('torch') else 0)"
# No .env in the image (.dockerignore): settings come from the container's environment.
WORKDIR /home/regsearch
USER regsearch
EXPOSE 8000
CMD ["regsearch", "api", "--host", "0.0.0.0", "--port", "8000"]

# -- the dashboard ----------------------------------------------------------------------------
FROM control-plane AS dashboard
COPY --from=requirements /tmp/dashboard.txt /tmp/requirements-dashboard.txt
RUN pip install -r /tmp/requirements-dashboard.txt \
    && python -c "import importlib.util as u, sys; sys.exit('torch in the dashboard image' if u.find_spec('torch') else 0)"
COPY pyproject.toml README.md ./
COPY regsearch regsearch
COPY services services
COPY worker worker
COPY dashboard dashboard
RUN pip install --no-deps "/app[dashboard]" \
    && python -c "import importlib.util as u, sys; sys.exit('torch in the dashboard image' if u.find_spec('torch') else 0)"
WORKDIR /home/regsearch
USER regsearch
EXPOSE 8501
CMD ["regsearch", "dashboard", "--host", "0.0.0.0", "--port", "8501"]

# -- the GPU worker ---------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS worker
ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_INDEX_URL=
ARG TORCH_FIND_LINKS=
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PATH=/opt/venv/bin:$PATH \
    REGSEARCH_DATA_DIR=/var/lib/regsearch \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    CUDA_DEVICE_ORDER=PCI_BUS_ID
COPY deploy/ca-certificates/ /usr/local/share/ca-certificates/regsearch-site/
COPY deploy/regsearch-gpu-slot deploy/regsearch-healthcheck /usr/local/bin/
# A base that already has python3, its venv module and the CA bundle (a local Debian image)
# skips apt; the CUDA images get them from their distribution.
RUN chmod 755 /usr/local/bin/regsearch-gpu-slot /usr/local/bin/regsearch-healthcheck \
    && if ! { python3 -c "import ensurepip, venv" && command -v update-ca-certificates; } >/dev/null 2>&1; then \
         apt-get update \
         && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
         && rm -rf /var/lib/apt/lists/*; \
       fi \
    && update-ca-certificates \
    && python3 -m venv /opt/venv \
    && useradd --system --uid 10001 --user-group --create-home --home-dir /home/regsearch regsearch \
    && mkdir -p /var/lib/regsearch && chown regsearch:regsearch /var/lib/regsearch
# torch first, in a layer of its own: it is most of the image and changes least often.
RUN pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} ${TORCH_FIND_LINKS:+--find-links "$TORCH_FIND_LINKS"} "$TORCH_SPEC"
WORKDIR /app
COPY --from=requirements /tmp/worker.txt /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt
COPY pyproject.toml README.md ./
COPY regsearch regsearch
COPY services services
COPY worker worker
COPY dashboard dashboard
RUN pip install --no-deps "/app[worker,s3]" \
    && python -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"

WORKDIR /home/regsearch
USER regsearch
# deploy/regsearch-gpu-slot: one worker container per GPU, each on a GPU no other one holds.
ENTRYPOINT ["/usr/local/bin/regsearch-gpu-slot"]
CMD ["regsearch", "worker", "--device", "cuda"]
