#!/usr/bin/env bash
# bench/gpu.sh: pruning on an NVIDIA GPU — a Llama-3.1-8B-shaped random model in bf16, vanilla vs the
# study's Taylor 2/7 (ignore 4/4) vs a uniform Taylor 2/7 (all layers, round_to 64): tokens/s and
# NVML joules/token at batch 1, 8, 32, peak memory, energy ratio beside parameter ratio.
# Needs: one CUDA GPU with >= ~60 GB free (H100/H200 class), torch+transformers+torch-pruning and the
# project installed (.venv, or the python given by $PYTHON); no network (nothing is downloaded).
# Runs in ~3-6 min on an H200 (hard limit 8 min); appends its table to bench/RESULTS.md.
# Extra arguments go to bench/gpu_bench.py (e.g. --batches 1,8 --rounds 5 --no-append --json out.json).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
if ! "$PY" -c "import torch, transformers, torch_pruning, pynvml; import backend" 2>/dev/null; then
  echo "bench/gpu.sh: $PY lacks torch/transformers/torch-pruning/nvidia-ml-py or the project;" \
       "run scripts/bootstrap (needs the network once) or set PYTHON=/path/to/python" >&2
  exit 2
fi
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "bench/gpu.sh: no CUDA device visible to torch; for a script check on CPU run:" \
       "$PY bench/gpu_bench.py --tiny --device cpu" >&2
  exit 2
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec timeout --signal=INT --kill-after=20 ${GPU_BENCH_TIMEOUT:-480} "$PY" bench/gpu_bench.py "$@"
