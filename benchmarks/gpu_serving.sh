#!/usr/bin/env bash
# The serving benchmark on a GPU machine, in under 10 minutes: a virtualenv with the CUDA build
# of the torch release `make setup` pins (its CPU build everywhere else) and the locked stack,
# then `bench_serving.py --quick` with every model replica on (a share of) a GPU.
#
#   benchmarks/gpu_serving.sh [more bench_serving.py options]
#   env: PYTHON (python3), VENV (build/venv-gpu, reused once installed), MODEL_GPUS (0.5),
#        CUDA_INDEX (https://download.pytorch.org/whl/cu128), JSON (build/gpu_serving.json)
#
# There is no `gpu` extra: the only GPU-specific package is torch itself, and its CUDA build
# comes from PyTorch's index, which an extra cannot name. Needs the network for the installs
# (about 5 GB with the CUDA libraries). The default model is the tiny from-scratch Llama (about
# 1.8M parameters), so this measures the serving path on a GPU replica (Serve, router, batching,
# placement), not a large model's throughput. The replica refuses to start rather than fall back
# to the CPU when it asked for a GPU it cannot see (tasks.shared.devices.choose_device).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
DEADLINE_S=600
PYTHON=${PYTHON:-python3}
VENV=${VENV:-build/venv-gpu}
# The benchmark keeps two applications up at once (/cont and /static), a replica each:
# half a GPU apiece lets one GPU hold both (asking 1 each would leave the second unscheduled).
MODEL_GPUS=${MODEL_GPUS:-0.5}
CUDA_INDEX=${CUDA_INDEX:-https://download.pytorch.org/whl/cu128}
JSON=${JSON:-build/gpu_serving.json}
TORCH=$(sed -nE 's/.*pip install --quiet torch==([0-9.]+).*/\1/p' Makefile)
[[ -n $TORCH ]] || { echo "no torch==X pin found in the Makefile's setup" >&2; exit 1; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader ||
  { echo "no NVIDIA GPU or driver here (nvidia-smi failed)" >&2; exit 1; }

if [[ ! -f $VENV/.installed-$TORCH ]]; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  # CUDA torch first; the lock's torch==X then accepts the installed X+cu128 and keeps it.
  "$VENV/bin/pip" install --quiet "torch==$TORCH" --index-url "$CUDA_INDEX"
  "$VENV/bin/pip" install --quiet -c infra/image/requirements.lock -e .
  touch "$VENV/.installed-$TORCH"
fi
"$VENV/bin/python" -c '
import torch
assert torch.cuda.is_available(), f"torch {torch.__version__} sees no GPU (CUDA {torch.version.cuda})"
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}, "
      f"bf16 {torch.cuda.is_bf16_supported()}")'

left=$((DEADLINE_S - (SECONDS - started)))
((left > 120)) || { echo "setup took $((SECONDS - started)) s: too little time left" >&2; exit 1; }
mkdir -p "$(dirname "$JSON")"
# The GPU's memory in use every 2 s, to show the replicas ran there (their CUDA context and
# weights) and how much they held.
nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader,nounits -l 2 \
  >"$JSON.gpu.csv" &
sampler=$!
trap 'kill "$sampler" 2>/dev/null || true' EXIT
status=0
# SIGINT first, so the benchmark's finally shuts Serve and Ray down; killed 30 s later.
timeout -s INT -k 30 "$left" "$VENV/bin/python" benchmarks/bench_serving.py --quick \
  --model-gpus "$MODEL_GPUS" --json "$JSON" "$@" || status=$?
kill "$sampler" 2>/dev/null || true
echo "GPU memory used, peak MiB: $(cut -d, -f1 "$JSON.gpu.csv" | sort -n | tail -1);" \
  "utilization, peak %: $(cut -d, -f2 "$JSON.gpu.csv" | sort -n | tail -1)"
echo "took $((SECONDS - started)) s; results in $JSON (exit $status)"
exit "$status"
