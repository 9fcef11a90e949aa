FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY regsearch regsearch
COPY services services
COPY worker worker
COPY dashboard dashboard
# The GPU image takes torch's default (CUDA) build; CPU-only hosts can pass --build-arg TORCH=torch==2.13.0+cpu.
ARG TORCH=torch
RUN pip install --no-cache-dir "$TORCH" && pip install --no-cache-dir ".[worker,dashboard]"
ENV PYTHONUNBUFFERED=1
