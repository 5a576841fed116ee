#!/usr/bin/env bash
# GPU evidence for issue 14, one prepared script of about 9 minutes (written without a GPU machine:
# not yet run). On a CUDA machine whose Python has a CPU-only onnxruntime, it installs
# onnxruntime-gpu itself, then:
#   1. builds the quick classifier and detector with FP16/INT8 variants (or uses REPO if it exists);
#   2. checks that every model's outputs on CUDA (and TensorRT where it loads) match the CPU;
#   3. IOBinding (outputs on the device, one copy back) against plain run on one CUDA session: same
#      outputs, items/s at b1/b32, and whether pinned host memory is reachable (benchmarks/io_binding.py);
#   4. Triton's instance placement: KIND_GPU count 1 and 2 on every visible GPU, each instance its own
#      session with its device_id, answers as the CPU's, count 1 vs 2 items/s (benchmarks/gpu_instances.py);
#   5. measures dynamic batching on vs off at c=16, and server vs in-process at batch 32, on CUDA,
#      for the FP32, FP16 and INT8 classifier (benchmarks/serving_throughput.py, DNNZOO_PROVIDERS=cuda).
# Usage: bash benchmarks/gpu.sh [OUT_DIR]      (REPO=path reuses a built repository)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-/tmp/dnnzoo-gpu}}
REPO=${REPO:-$OUT/model_repository}
PY=${PYTHON:-python}
mkdir -p "$OUT"
export PYTHONPATH=$PWD OMP_WAIT_POLICY=PASSIVE
log() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$OUT/gpu.log"; }

log "onnxruntime-gpu"
# onnxruntime-gpu 1.31 needs CUDA 13 and cuDNN 9: its [cuda,cudnn] extras bring them as wheels, and
# every process started below (server, benchmarks) finds them through LD_LIBRARY_PATH.
$PY -m pip install -q --upgrade "onnxruntime-gpu[cuda,cudnn]>=1.20" 2>&1 | tail -2 || true
export LD_LIBRARY_PATH="$($PY -c "import glob, os, site; print(':'.join(sorted({os.path.dirname(p) for s in site.getsitepackages() for p in glob.glob(s + '/nvidia/*/lib/*.so*')})))"):${LD_LIBRARY_PATH:-}"
$PY - <<'PY' | tee -a "$OUT/gpu.log"
import onnxruntime as ort, torch
print("onnxruntime", ort.__version__, ort.get_available_providers(), "torch cuda:", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
PY

if [ ! -d "$REPO" ]; then
  log "train and export the quick classifier and detector (GPU training), with fp16 and int8 variants"
  for family in classifier detector; do
    timeout 300 $PY -m dnnzoo train "$family" --profile quick --device cuda --out "$OUT/runs/$family-quick" --no-progress
    $PY -m dnnzoo export "$OUT/runs/$family-quick" --repository "$REPO" --precision fp32,fp16,int8 --allow-degraded
  done
fi
$PY -m dnnzoo repo check "$REPO" --report | tee -a "$OUT/gpu.log"

log "outputs: CUDA vs CPU, then TensorRT vs CPU (where it loads)"
$PY benchmarks/gpu_check.py "$REPO" --provider cuda --seconds 2 | tee -a "$OUT/gpu.log"
timeout 120 $PY benchmarks/gpu_check.py "$REPO" --provider tensorrt --seconds 2 2>&1 | tail -20 | tee -a "$OUT/gpu.log" || log "tensorrt did not run"

log "IOBinding vs run on CUDA (same outputs; items/s; pinned inputs where reachable)"
timeout 90 $PY benchmarks/io_binding.py "$REPO" --providers cuda --model digits_classifier --model digits_detector \
  --seconds 0.5 --rounds 3 2>&1 | grep -v "^\s*$" | tail -12 | tee -a "$OUT/gpu.log" || log "io_binding: failed or timed out"

log "instances: KIND_GPU count 1 / 2 per GPU, a session each on its own GPU"
timeout 90 $PY benchmarks/gpu_instances.py "$REPO" --model digits_classifier --seconds 1 --rounds 2 \
  2>&1 | grep -E "^(ok|FAIL|items|no GPU)|Error" | tee -a "$OUT/gpu.log" || log "gpu_instances: failed or timed out"

for model in digits_classifier digits_classifier_fp16 digits_classifier_int8; do
  [ -d "$REPO/$model" ] || continue
  log "serving on CUDA: $model (batching on/off at c=16; batch 32 server vs in-process)"
  DNNZOO_PROVIDERS=cuda timeout 150 $PY benchmarks/serving_throughput.py --repository "$REPO" --model "$model" --seconds 3 --no-bare \
    2>&1 | tail -25 | tee -a "$OUT/gpu.log" || log "$model: serving_throughput failed"
done
log "done: $OUT/gpu.log"
