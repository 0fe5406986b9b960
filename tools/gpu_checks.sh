#!/usr/bin/env bash
# The checks that need a CUDA GPU and onnxruntime-gpu, in one run (docs/runtime.md, "CUDA"):
#   the CUDA = CPU tests, a CLI run on CUDA, CUDA vs CPU errors (TF32 off and on), and the runtime benchmarks
#   on both providers. Usage: bash tools/gpu_checks.sh [python]   (the python that has lmstep installed)
set -u
PY=${1:-python3}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
$PY -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())"
echo "== CUDA tests"; $PY -m pytest -q -rs -p no:cacheprovider tests/test_runtime_ort.py -k "cuda or deterministic or matches" 2>&1 | tail -15
echo "== CLI on CUDA"; $PY -m lmstep.runtime.cli generate --model tiny-mamba --runtime onnx --provider cuda --prompt "Hello" --steps 12 2>&1 | tail -3
echo "== CUDA vs CPU"; $PY benchmarks/measure_cuda.py
echo "== benchmarks, CUDA provider"; $PY benchmarks/bench_runtime.py --provider cuda
echo "== benchmarks, CPU provider (1 thread)"; $PY benchmarks/bench_runtime.py
