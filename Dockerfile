# dnnzoo serving image: ONNX Runtime + gRPC, no torch.
#
# Targets (docker build --target NAME; the default is `runtime`, the last stage):
#   runtime  the serving image; the model repository is mounted at /models at run time
#   baked    runtime + model_repository/ from the build context copied into /models
#   models   torch + the training code; runs `dnnzoo build` during the build into /opt/dnnzoo/models
#            (compose copies it into a named volume, so a machine with only Docker can serve)
#
# Build arguments:
#   BASE_IMAGE       any Debian/Ubuntu-like image; python3 with venv is installed by apt if missing
#                    (python:3.11-slim by default; a local or mirrored image stands in for it)
#   ONNXRUNTIME      the ONNX Runtime requirement: plain onnxruntime (CPU image, no CUDA libraries)
#                    or onnxruntime-gpu with a CUDA base for the GPU image:
#                      --build-arg BASE_IMAGE=nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04
#                      --build-arg ONNXRUNTIME=onnxruntime-gpu
#   TORCH_INDEX_URL  where the models stage takes torch from (the CPU wheels by default)
#   TORCH_VERSION, MODELS_PROFILE   the torch release and the `dnnzoo build --profile` of that stage
#
# Behind a TLS-intercepting proxy, pass its CA bundle as a build secret; it is mounted only while
# pip runs and never lands in a layer:
#   docker build --secret id=pipca,src=/etc/ssl/certs/ca-certificates.crt .
#
# Run-time settings: every `dnnzoo serve` flag reads DNNZOO_<FLAG> (serving/config.py), e.g.
#   DNNZOO_REPOSITORY (/models)   DNNZOO_PORT (8001)   DNNZOO_METRICS_PORT (8002, -1 = off)
#   DNNZOO_HTTP_PORT (8000, HTTP/REST, -1 = off)
#   DNNZOO_PROVIDERS (auto = TensorRT, CUDA, CPU, whichever the installed runtime really offers)
#   DNNZOO_MODEL_CONTROL_MODE (none|poll|explicit)   DNNZOO_LOAD_MODEL   DNNZOO_POLL_SECONDS
#   DNNZOO_MAX_MESSAGE_MB   DNNZOO_GRACE_SECONDS   DNNZOO_WORKERS
#   DNNZOO_TLS_CERT / DNNZOO_TLS_KEY / DNNZOO_TLS_CLIENT_CA
#   DNNZOO_MAX_GENERATE_COUNT   DNNZOO_MAX_FORECAST_HORIZON   DNNZOO_MAX_IMAGE_PIXELS

ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS base
SHELL ["/bin/sh", "-eu", "-c"]
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DEBIAN_FRONTEND=noninteractive
# A base without Python (a CUDA runtime image) gets the distribution's python3 and venv.
# hadolint ignore=DL3008
RUN if ! python3 -c "import venv, ensurepip" 2>/dev/null; then \
        apt-get update; \
        apt-get install -y --no-install-recommends python3 python3-venv; \
        rm -rf /var/lib/apt/lists/*; \
    fi

# The serving virtual environment: the serving requirements, then the project without its
# dependencies (which would pull onnxruntime-gpu into the CPU image).
FROM base AS builder
ARG ONNXRUNTIME="onnxruntime>=1.20"
WORKDIR /src
COPY deploy/requirements-serving.txt ./
RUN --mount=type=secret,id=pipca,required=false \
    if [ -s /run/secrets/pipca ]; then export PIP_CERT=/run/secrets/pipca; fi; \
    python3 -m venv /opt/venv; \
    /opt/venv/bin/pip install --upgrade pip; \
    /opt/venv/bin/pip install "${ONNXRUNTIME}" -r requirements-serving.txt
COPY pyproject.toml README.md ./
COPY dnnzoo dnnzoo
COPY serving serving
COPY protos protos
RUN --mount=type=secret,id=pipca,required=false \
    if [ -s /run/secrets/pipca ]; then export PIP_CERT=/run/secrets/pipca; fi; \
    /opt/venv/bin/pip install --no-deps . ; \
    /opt/venv/bin/pip uninstall -y pip

# Trains and exports the default models inside the build (minutes on a laptop CPU).
FROM base AS models
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
ARG MODELS_PROFILE=quick
WORKDIR /src
COPY pyproject.toml README.md ./
COPY dnnzoo dnnzoo
COPY serving serving
COPY protos protos
COPY training training
COPY export export
RUN --mount=type=secret,id=pipca,required=false \
    if [ -s /run/secrets/pipca ]; then export PIP_CERT=/run/secrets/pipca; fi; \
    python3 -m venv /opt/venv; \
    /opt/venv/bin/pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"; \
    /opt/venv/bin/pip install ".[train]"
ENV PATH=/opt/venv/bin:$PATH \
    OMP_WAIT_POLICY=PASSIVE
RUN dnnzoo build --profile "${MODELS_PROFILE}" --runs /tmp/runs --repository /opt/dnnzoo/models --no-progress; \
    rm -rf /tmp/runs

# The serving image (with its variant `baked` below): the venv, a non-root user, nothing else.
FROM base AS serving
RUN mkdir -p /models /home/dnnzoo; \
    if command -v useradd >/dev/null; then \
        useradd --system --uid 10001 --user-group --home-dir /home/dnnzoo --shell /usr/sbin/nologin dnnzoo; \
    else \
        echo "dnnzoo:x:10001:10001:dnnzoo:/home/dnnzoo:/usr/sbin/nologin" >> /etc/passwd; \
        echo "dnnzoo:x:10001:" >> /etc/group; \
    fi; \
    chown 10001:10001 /home/dnnzoo
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/home/dnnzoo \
    DNNZOO_REPOSITORY=/models \
    DNNZOO_HOST=0.0.0.0 \
    DNNZOO_PORT=8001 \
    DNNZOO_METRICS_PORT=8002 \
    DNNZOO_HTTP_PORT=8000 \
    DNNZOO_PROVIDERS=auto
WORKDIR /home/dnnzoo
USER 10001:10001
EXPOSE 8000 8001 8002
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/bin/sh", "-c", "dnnzoo health --server 127.0.0.1:${DNNZOO_PORT} --timeout 3 >/dev/null"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["dnnzoo", "serve"]
CMD ["--repository", "/models"]

# The repository from the build context (`dnnzoo build` on the host wrote model_repository/).
FROM serving AS baked
COPY --chown=10001:10001 model_repository/ /models/

# The default target: serve whatever repository is mounted at /models.
FROM serving AS runtime
