# Tracker service image on an NVIDIA CUDA runtime base.
# Build:  docker build -t rt-tracker .
# Run:    docker run --gpus all -p 50051:50051 rt-tracker
# The CUDA/cuDNN runtime comes from the base image; torch's CUDA wheels bring their own
# libraries as well, so the base mainly supplies the driver interface and a tested glibc.
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

WORKDIR /app
# Dependencies first so that code edits do not reinstall torch.
COPY pyproject.toml README.md ./
COPY tracker/__init__.py tracker/__init__.py
RUN python3 -c "import tomllib; print('\\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install --upgrade pip && pip install -r /tmp/requirements.txt
COPY proto proto
COPY tracker tracker
COPY engines engines
RUN pip install --no-deps . && useradd --system --uid 10001 tracker

USER tracker
EXPOSE 50051
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
    CMD python3 -c "import grpc,sys;from grpc_health.v1 import health_pb2 as h,health_pb2_grpc as g;c=grpc.insecure_channel('127.0.0.1:50051');sys.exit(0 if g.HealthStub(c).Check(h.HealthCheckRequest(),timeout=2).status==h.HealthCheckResponse.SERVING else 1)"
# Plaintext beyond loopback must be asked for explicitly; put the container behind a
# TLS-terminating network or mount certificates once the server takes them.
ENTRYPOINT ["tracker"]
CMD ["serve", "--engine", "flow", "--host", "0.0.0.0", "--port", "50051", "--insecure"]
