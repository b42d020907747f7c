#!/usr/bin/env bash
# GPU check: load a model on CUDA (or TensorRT), compare its scores with the CPU provider's and
# print both throughputs (benches/gpu_check.rs). Run on a machine with an NVIDIA GPU:
#
#   benches/gpu_check.sh [--model-dir models/rra-bert-m] [--provider cuda|tensorrt] [--device-id 0]
#
# What it sets up, idempotently, in git-ignored folders:
# - the GPU build of ONNX Runtime: libonnxruntime.so and its CUDA/TensorRT provider libraries
#   from the onnxruntime-gpu wheel (package registry; ~255 MB) into .runtime/onnxruntime-gpu/;
#   or point ORT_GPU_LIB_DIR at a folder that already holds them (machines without registry
#   access: copy the wheel's onnxruntime/capi/ there);
# - CUDA 13 and cuDNN 9: the nvidia-* Python packages PyTorch installs into .venv (make setup),
#   put on LD_LIBRARY_PATH; or set CUDA_LIB_DIRS (colon-separated) to system CUDA libraries.
set -euo pipefail
cd "$(dirname "$0")/.."
# The newest onnxruntime-gpu on the registry (the CPU build the service uses is 1.32.0; both
# speak ONNX Runtime API 22, which is what the binary needs). The Dockerfile's CUDA image uses the same.
ORT_VERSION=${ORT_GPU_VERSION:-1.31.1}
LIB_DIR=${ORT_GPU_LIB_DIR:-.runtime/onnxruntime-gpu}
PY=${PYTHON:-python3}

if [ ! -f "$LIB_DIR/libonnxruntime.so.$ORT_VERSION" ]; then
  mkdir -p .runtime/wheels "$LIB_DIR"
  $PY -m pip download --quiet --no-deps --only-binary=:all: --dest .runtime/wheels "onnxruntime-gpu==$ORT_VERSION"
  $PY - "$LIB_DIR" "$ORT_VERSION" <<'PYEOF'
import glob, os, sys, zipfile
out, version = sys.argv[1], sys.argv[2]
wheel = glob.glob(f".runtime/wheels/onnxruntime_gpu-{version}-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        base = os.path.basename(name)
        if name.startswith("onnxruntime/capi/") and base.startswith("libonnxruntime"):
            with open(os.path.join(out, base), "wb") as f:
                f.write(z.read(name))
            print("extracted", base)
PYEOF
fi

if [ -z "${CUDA_LIB_DIRS:-}" ]; then
  CUDA_LIB_DIRS=$(ls -d .venv/lib/python3*/site-packages/nvidia/*/lib 2>/dev/null | paste -sd: - || true)
fi
if [ -z "$CUDA_LIB_DIRS" ]; then
  echo "no CUDA libraries found: run make setup (PyTorch brings CUDA 13 and cuDNN 9) or set CUDA_LIB_DIRS" >&2
  exit 1
fi
export LD_LIBRARY_PATH="$(realpath "$LIB_DIR"):$(echo "$CUDA_LIB_DIRS" | tr ':' '\n' | xargs -r realpath | paste -sd: -)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export ORT_DYLIB_PATH="$(realpath "$LIB_DIR/libonnxruntime.so.$ORT_VERSION")"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec cargo bench --locked --bench gpu_check -- "$@"
