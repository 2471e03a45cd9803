#!/usr/bin/env bash
# The GPU checks in one call, sized for a short lease on one GPU (the limits below add up to 15.5
# minutes; on an H200 the steps before the 1B/7B benchmark took about 4):
#
#   bash benchmarks/gpu_checks.sh [OUT]      # logs under OUT (default: $OUT, else runs/gpu_checks)
#
# 1. the GPU-marked tests (CUDA-graph decode against eager, the trainer on CUDA);
# 2. the engine against transformers on the embedded model, batch 1 and 16;
# 3. the shapes GRPO recipe on the GPU for 5 and 20 steps (the difference is the per-step time);
# 4. the engine on random Janus-Pro-1B and -7B weights (bf16), batch 1 and 16, until its limit.
# Each step has its own time limit and log; a step that fails does not stop the others. A machine
# whose transformers is older than requirements.txt asks can be given wheels in .whl/ (installed
# into /tmp/site first). Uses `python3` unless PYTHON is set.
set -u
OUT="${1:-${OUT:-runs/gpu_checks}}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
if compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

step() {
  local name=$1 limit=$2
  shift 2
  echo "== $name ($(date +%T), limit ${limit}s)"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "rc=$?" >> "$OUT/$name.log"
  tail -n 30 "$OUT/$name.log"
}

step env 60 bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; \
  $PY -c 'import torch, transformers; print(torch.__version__, transformers.__version__, torch.cuda.get_device_name())'"
# only the files holding GPU tests: collecting the others needs the app's and store's packages
step pytest_gpu 240 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/reasongen/test_engine.py \
  tests/training/test_entry_points.py
step bench_embedded 120 "$PY" benchmarks/generation.py --sizes embedded --batches 1,16 --cot-tokens 32 \
  --device cuda --repeats 5
GRPO=("$PY" -m training.grpo --config training/recipes/shapes.yaml --device auto --torch_threads 4
  --average_last 0 --sample_images_every 0 --progress false)
step grpo_5_steps 90 bash -c 'time "$@"' _ "${GRPO[@]}" --max_steps 5 --save_every 5 --out_dir /tmp/gpu_grpo5
step grpo_20_steps 120 bash -c 'time "$@"' _ "${GRPO[@]}" --max_steps 20 --save_every 20 --out_dir /tmp/gpu_grpo20
step bench_real 300 "$PY" benchmarks/generation.py --sizes 1b,7b --batches 1,16 --cot-tokens 32 --device cuda \
  --repeats 2
echo "== done $(date +%T); logs in $OUT"
