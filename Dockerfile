# syntax=docker/dockerfile:1
# rt-tracker images: two targets from this one file (docs/deployment.md has the full steps).
#   gpu (default): CUDA 13 base; torch CUDA, sam2 with its CUDA extension (compiled in a
#                  builder stage that has nvcc), onnxruntime-gpu and TensorRT (tensorrt-cu13).
#                  Serves flow, sam2, onnx and tensorrt.
#   cpu:           slim Python base; flow, plus sam2 on CPU and the exported graphs on
#                  OpenVINO (the openvino engine: bf16 where the CPU has AMX or avx512_bf16).
#   docker build --target gpu -t rt-tracker:gpu .
#   docker build --target cpu -t rt-tracker:cpu .
# Every pip install uses constraints.txt, the one pin list the Makefile uses too. torch
# 2.14.1's PyPI wheels are CUDA 13.0 builds, so the base, nvcc, onnxruntime-gpu and the
# TensorRT wheels are CUDA 13 as well.
# At run time: weights from a read-only volume at /models (checked against its
# manifest.json), TLS certificate/key and bearer tokens from secrets under /run/secrets.
# The default command refuses to start without them; plaintext must be asked for.

ARG CUDA_VERSION=13.0.2
ARG UBUNTU=ubuntu24.04

# ---------------------------------------------------------------- cpu builder
FROM python:3.11-slim-bookworm AS cpu-builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/* \
    && python -m venv /opt/venv
WORKDIR /src
COPY constraints.txt ./
# PyTorch's CPU wheels (no CUDA libraries: a fraction of the size); sam2 without its
# CUDA extension, built against that torch.
RUN pip install -c constraints.txt setuptools wheel \
    && pip install -c constraints.txt --index-url https://download.pytorch.org/whl/cpu torch torchvision \
    && SAM2_BUILD_CUDA=0 pip install -c constraints.txt --no-build-isolation sam2
COPY pyproject.toml README.md ./
COPY proto proto
COPY tracker tracker
RUN pip install -c constraints.txt '.[io,sam2,openvino]'

# ---------------------------------------------------------------- cpu
FROM python:3.11-slim-bookworm AS cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    TRACKER_WEIGHTS_DIR=/models \
    HOME=/tmp \
    TRACKER_HEALTH_ADDRESS=127.0.0.1:50051 \
    TRACKER_HEALTH_TLS_CA=/run/secrets/ca.crt \
    TRACKER_HEALTH_SERVER_NAME=localhost
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin tracker \
    && mkdir -p /models
COPY --from=cpu-builder /opt/venv /opt/venv
VOLUME ["/models"]
USER 10001:10001
WORKDIR /tmp
EXPOSE 50051 9100
# grpc.health.v1 over TLS: /run/secrets/ca.crt signed tls.crt (a self-signed tls.crt is its own
# CA), whose names include localhost. Serving with --insecure: set TRACKER_HEALTH_TLS_CA="".
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-m", "tracker.deploy.healthcheck"]
ENTRYPOINT ["tracker"]
CMD ["serve", "--engine", "flow", "--model-dir", "/models", \
     "--host", "0.0.0.0", "--port", "50051", "--metrics-port", "9100", "--metrics-host", "0.0.0.0", \
     "--tls-cert", "/run/secrets/tls.crt", "--tls-key", "/run/secrets/tls.key", \
     "--auth-token-file", "/run/secrets/tokens"]

# ---------------------------------------------------------------- gpu builder
FROM nvidia/cuda:${CUDA_VERSION}-cudnn-devel-${UBUNTU} AS gpu-builder
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
# Ubuntu's package versions rotate out of the archive: pinning them would break rebuilds.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv
WORKDIR /src
COPY constraints.txt ./
# torch first; sam2's sdist declares torch as a build requirement, so it is built against
# this torch without build isolation (an isolated build would fetch a second torch).
# SAM2_BUILD_ALLOW_ERRORS=0: a failed CUDA extension build fails the image, not a warning.
ARG TORCH_CUDA_ARCH_LIST="8.0;8.6;8.9;9.0;10.0;12.0"
RUN pip install -c constraints.txt setuptools wheel \
    && pip install -c constraints.txt torch torchvision \
    && SAM2_BUILD_CUDA=1 SAM2_BUILD_ALLOW_ERRORS=0 TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST}" \
       pip install -c constraints.txt --no-build-isolation sam2 \
    && python -c "import sam2._C"
# ONNX Runtime's GPU build (never the CPU `onnxruntime` beside it: both own the module)
# and TensorRT's PyPI wheels, CUDA 13 builds like torch.
RUN pip install -c constraints.txt onnx onnxruntime-gpu tensorrt-cu13 pycocotools nvidia-ml-py
COPY pyproject.toml README.md ./
COPY proto proto
COPY tracker tracker
RUN pip install -c constraints.txt '.[io,sam2,bench]'

# ---------------------------------------------------------------- gpu (last stage: the default target)
FROM nvidia/cuda:${CUDA_VERSION}-cudnn-runtime-${UBUNTU} AS gpu
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    TRACKER_WEIGHTS_DIR=/models \
    HOME=/tmp \
    TRACKER_HEALTH_ADDRESS=127.0.0.1:50051 \
    TRACKER_HEALTH_TLS_CA=/run/secrets/ca.crt \
    TRACKER_HEALTH_SERVER_NAME=localhost
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin tracker \
    && mkdir -p /models && chown root:root /models
COPY --from=gpu-builder /opt/venv /opt/venv
# Weights: mount read-only (-v HOST_DIR:/models:ro); the server loads only files whose
# SHA-256 is listed in /models/manifest.json (`tracker weights fetch|add --dir HOST_DIR`).
VOLUME ["/models"]
USER 10001:10001
WORKDIR /tmp
# 50051: gRPC (Tracker, health, reflection); 9100: Prometheus /metrics.
EXPOSE 50051 9100
# grpc.health.v1 over TLS: /run/secrets/ca.crt signed tls.crt (a self-signed tls.crt is its own
# CA), whose names include localhost. Serving with --insecure: set TRACKER_HEALTH_TLS_CA="".
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-m", "tracker.deploy.healthcheck"]
ENTRYPOINT ["tracker"]
# TLS and tokens from secrets: serve refuses plaintext beyond loopback unless --insecure is
# given, and stops with "TLS certificate file not found" when the secrets are not mounted.
CMD ["serve", "--engine", "sam2", "--model", "sam2.1_hiera_base_plus", "--device", "cuda", \
     "--checkpoint", "/models/sam2.1_hiera_base_plus.pt", "--model-dir", "/models", \
     "--host", "0.0.0.0", "--port", "50051", "--metrics-port", "9100", "--metrics-host", "0.0.0.0", \
     "--tls-cert", "/run/secrets/tls.crt", "--tls-key", "/run/secrets/tls.key", \
     "--auth-token-file", "/run/secrets/tokens"]
