# syntax=docker/dockerfile:1
# rradistill image: the service binary, ONNX Runtime's shared library and the default model.
#
#   docker build -t rradistill .                        # CPU (ONNX Runtime 1.32.0)
#   docker build -t rradistill:cuda --build-arg RUNTIME=cuda .
#                                                       # GPU (onnxruntime-gpu 1.31.1, CUDA 13, cuDNN 9)
#   docker run -p 8080:8080 rradistill
#
# Configuration is by environment: every flag of `rradistill --help` has a variable (README,
# "Configuration"). The CUDA image needs the host's NVIDIA driver (>= the one CUDA 13 needs)
# and the NVIDIA container toolkit (`docker run --gpus all`, or a GPU node in Kubernetes).
# Stages: `build` compiles the binary; `ort-cpu` / `ort-cuda` take the shared libraries out of
# their Python wheels (pip download, no Python in the final image); `runtime` assembles one of
# them, chosen by RUNTIME. deploy/tests/test_dockerfile.py lints this file with hadolint and
# checks that every path it copies exists.

ARG RUNTIME=cpu

# ---- build: the release binary ----------------------------------------------------------------
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY src src
COPY benches benches
# Symbols are kept (function names in backtraces and profiles), the DWARF debug info that the
# release profile adds for local profiling is not: the binary drops from ~74 MB to ~13 MB.
ENV CARGO_PROFILE_RELEASE_STRIP=debuginfo
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin rradistill \
    && cp target/release/rradistill /usr/local/bin/rradistill

# ---- ort-cpu: libonnxruntime.so out of the onnxruntime wheel -----------------------------------
FROM python:3.11-slim-bookworm AS ort-cpu
ARG ORT_VERSION=1.32.0
WORKDIR /wheels
COPY deploy/docker/extract-libs.py /usr/local/bin/extract-libs.py
RUN pip download --no-cache-dir --no-deps --only-binary=:all: onnxruntime==${ORT_VERSION} \
    && python3 /usr/local/bin/extract-libs.py /opt/onnxruntime/lib ./*.whl \
    && ln -s libonnxruntime.so.${ORT_VERSION} /opt/onnxruntime/lib/libonnxruntime.so \
    && rm -rf /wheels/*

# ---- ort-cuda: onnxruntime-gpu with its CUDA execution provider, and CUDA 13 + cuDNN 9 ---------
# The versions are those `pip install onnxruntime-gpu[cuda,cudnn]==1.31.1` resolves to; the
# CUDA libraries come from NVIDIA's wheels so that no CUDA base image has to match them.
FROM python:3.11-slim-bookworm AS ort-cuda
ARG ORT_GPU_VERSION=1.31.1
WORKDIR /wheels
COPY deploy/docker/extract-libs.py /usr/local/bin/extract-libs.py
RUN pip download --no-cache-dir --no-deps --only-binary=:all: \
        onnxruntime-gpu==${ORT_GPU_VERSION} \
        nvidia-cuda-runtime==13.5.37 \
        nvidia-cuda-nvrtc==13.5.37 \
        nvidia-nvjitlink==13.5.37 \
        nvidia-cublas==13.10.0.20 \
        nvidia-curand==10.4.5.25 \
        nvidia-cufft==12.5.0.14 \
        nvidia-cudnn-cu13==9.28.1.4 \
    && python3 /usr/local/bin/extract-libs.py /opt/onnxruntime/lib ./*.whl \
    && ln -s libonnxruntime.so.${ORT_GPU_VERSION} /opt/onnxruntime/lib/libonnxruntime.so \
    && rm -rf /wheels/*

# ---- runtime ---------------------------------------------------------------------------------
# hadolint ignore=DL3006
FROM ort-${RUNTIME} AS ort
FROM debian:bookworm-slim AS runtime
LABEL org.opencontainers.image.title="rradistill" \
      org.opencontainers.image.description="Online re-ranking with students distilled from an LLM (RRADistill)" \
      org.opencontainers.image.licenses="Apache-2.0"
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin rradistill
COPY --from=ort /opt/onnxruntime/lib /opt/onnxruntime/lib
COPY --from=build /usr/local/bin/rradistill /app/rradistill
COPY deploy/docker/healthcheck.sh /app/healthcheck.sh
# The models the image can serve: every model folder committed under models/ (.dockerignore
# leaves out the toolkit, its tests and its work folders). The default is models/rra-bert-m,
# the toolkit's reference student (models/DEFAULT); mount another model folder and set
# MODEL_DIR to it to serve your own.
COPY models/ /app/models/

# Libraries next to libonnxruntime.so (CUDA provider, CUDA, cuDNN) are found through
# LD_LIBRARY_PATH. NVIDIA_* tell the NVIDIA container toolkit to inject the driver (CUDA image).
ENV ORT_DYLIB_PATH=/opt/onnxruntime/lib/libonnxruntime.so \
    LD_LIBRARY_PATH=/opt/onnxruntime/lib \
    MODEL_DIR=/app/models/rra-bert-m \
    HOST=0.0.0.0 \
    PORT=8080 \
    GRPC_PORT=50051 \
    LOG_FORMAT=json \
    RUST_LOG=info \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

USER 10001:10001
WORKDIR /app
EXPOSE 8080 50051
# /ready is 200 once every model is loaded and warm, 503 while draining. Kubernetes ignores
# HEALTHCHECK and uses the probes in deploy/kubernetes/ instead.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 CMD ["/app/healthcheck.sh"]
# The service is PID 1: it handles SIGTERM itself (drains for DRAIN_TIMEOUT_SECS, exits 0).
ENTRYPOINT ["/app/rradistill"]
