#!/usr/bin/env bash
# One prepared GPU check, for a lent GPU machine: installs what it lacks, runs the
# `gpu`-marked tests, an NCCL all-reduce and bench/serving_gpu.py, and prints one summary.
#
#   scripts/gpu-check.sh [--wheelhouse DIR]
#
# Everything stays inside bench/results/gpu-check/ (a venv that also sees the machine's own packages,
# logs, results). Packages come from PyPI, or only from DIR with --wheelhouse (machines
# without network). Each optional piece (torch with CUDA, cuda-python, onnxruntime-gpu,
# TensorRT) that cannot be installed is named in the summary, and the parts that need it
# report why they did not run; in particular the summary says plainly when the TensorRT
# rows did not run. The whole check stays under 8 minutes (BUDGET seconds, default 450).
set -uo pipefail
cd "$(dirname "$0")/.."

BUDGET=${BUDGET:-450}
OUT=${GPU_CHECK_OUT:-bench/results/gpu-check}  # ignored by git
PY=${PYTHON:-python3}
WHEELHOUSE=""
if [ "${1:-}" = "--wheelhouse" ] && [ -n "${2:-}" ]; then WHEELHOUSE=$2; fi
mkdir -p "$OUT"
VENV="$OUT/venv"
START=$SECONDS
SUMMARY=()
note() { SUMMARY+=("$1"); echo "gpu-check: $1" >&2; }
left() { local l=$((BUDGET - (SECONDS - START))); [ "$l" -lt 5 ] && l=5; echo "$l"; }
cap() { local want=$1 l; l=$(left); [ "$want" -lt "$l" ] && echo "$want" || echo "$l"; }

# --- the GPU -------------------------------------------------------------------------
if GPU=$(nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader 2>&1); then
  note "GPU: $(echo "$GPU" | head -n 1)"
else
  note "no GPU visible (nvidia-smi: $(echo "$GPU" | head -n 1)); the gpu tests will skip"
fi

# --- what the machine lacks --------------------------------------------------------------
[ -x "$VENV/bin/python" ] || "$PY" -m venv --system-site-packages "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
if [ -n "$WHEELHOUSE" ]; then PIP+=(--no-index --find-links "$WHEELHOUSE"); fi
have() { "$VENV/bin/python" -c "$1" >/dev/null 2>&1; }
try_install() {  # name, import check, timeout, pip arguments...
  local name=$1 check=$2 limit=$3; shift 3
  if have "$check"; then note "$name: present"; return 0; fi
  if timeout "$(cap "$limit")" "${PIP[@]}" "$@" >>"$OUT/install.log" 2>&1 && have "$check"; then
    note "$name: installed"
  else
    note "$name: NOT available (see $OUT/install.log)"
  fi
}
# Gantry itself is used from the source tree (no build step, which offline pip cannot do).
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
try_install "numpy, onnx, onnxruntime" "import numpy, onnx, onnxruntime.quantization" 120 \
  "numpy>=1.26" "onnx>=1.17" "onnxruntime>=1.20"
try_install "pytest" "import pytest, pytest_timeout, pytest_asyncio" 60 \
  pytest pytest-timeout pytest-asyncio
try_install "torch (any build: exports the test models)" "import torch" 150 "torch==2.13.0"
have "import torch; assert torch.cuda.is_available()" && note "torch with CUDA: present" \
  || note "torch with CUDA: NOT available (torch eager rows and NCCL will not run)"
try_install "cuda-bindings (CUDA 12)" "from model_repo import cuda_runtime as c; assert c.cuda_available()[0]" \
  40 "cuda-bindings>=12.6,<13"
if ! have "import onnxruntime as o; assert 'CUDAExecutionProvider' in o.get_available_providers()"; then
  "$VENV/bin/python" -m pip uninstall -q -y onnxruntime >>"$OUT/install.log" 2>&1 || true
fi
try_install "onnxruntime-gpu" \
  "import onnxruntime as o; assert 'CUDAExecutionProvider' in o.get_available_providers()" \
  90 "onnxruntime-gpu"
have "import onnxruntime" || timeout "$(cap 60)" "${PIP[@]}" onnxruntime >>"$OUT/install.log" 2>&1
try_install "TensorRT" "import tensorrt; tensorrt.Builder" 90 "tensorrt-cu12==10.3.0"

# --- gpu tests -------------------------------------------------------------------------
timeout "$(cap 150)" "$VENV/bin/python" -m pytest -m gpu -q -rs -p no:cacheprovider \
  tests/model_repo/test_modelrepo_gpu.py tests/model_repo/test_modelrepo_tensorrt.py \
  >"$OUT/pytest.log" 2>&1
note "pytest -m gpu: $( (grep -E '(passed|failed|skipped|error|no tests ran)' "$OUT/pytest.log" \
  || tail -n 1 "$OUT/pytest.log") | tail -n 1)"
while IFS= read -r line; do note "  $line"; done < <(grep -E '^(SKIPPED|FAILED|ERROR)' "$OUT/pytest.log" | head -n 12)

# --- NCCL (needs only CUDA torch) -----------------------------------------------------
NCCL=$(timeout "$(cap 60)" "$VENV/bin/python" - 2>&1 <<'EOF'
import os, torch, torch.distributed as dist
if not torch.cuda.is_available():
    raise SystemExit("skipped: torch has no CUDA")
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29533")
dist.init_process_group("nccl", rank=0, world_size=1)
x = torch.ones(4, device="cuda")
dist.all_reduce(x)
torch.cuda.synchronize()
dist.destroy_process_group()
print(f"ok (NCCL {'.'.join(map(str, torch.cuda.nccl.version()))})")
EOF
)
note "NCCL all-reduce: $(echo "$NCCL" | tail -n 1)"

# --- the serving bench -------------------------------------------------------------------
rm -f bench/results/serving_gpu.json
timeout "$(cap 240)" "$VENV/bin/python" bench/serving_gpu.py --seconds 2 >"$OUT/bench.log" 2>&1
RC=$?
[ "$RC" = 124 ] && note "bench/serving_gpu.py: cut short by the time budget (rows below are all it measured)"
note "bench/serving_gpu.py (exit $RC):"
BENCH=$(OUT="$OUT" "$VENV/bin/python" - <<'EOF'
import json, os, pathlib
p = pathlib.Path("bench/results/serving_gpu.json")
if not p.is_file():
    print(f"  no results: the TensorRT rows did NOT run (see {os.environ['OUT']}/bench.log)")
    raise SystemExit
data = json.loads(p.read_text())
trt_ran = False
for model, rows in data["rows"].items():
    print(f"  {model}")
    for name, value in rows.items():
        ran = not isinstance(value, str)
        trt_ran |= ran and name.startswith("TensorRT")
        print(f"    {name:<24} " + (f"{value:,.0f} img/s" if ran else f"did not run: {value}"))
if not trt_ran:
    print("  the TensorRT rows did NOT run on this machine")
EOF
)
while IFS= read -r line; do note "$line"; done <<<"$BENCH"

echo
echo "=== gpu-check summary ($((SECONDS - START)) s) ==="
printf '%s\n' "${SUMMARY[@]}"
