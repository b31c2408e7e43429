#!/usr/bin/env bash
# The pre-training throughput benchmark on an idle machine, pinned to 2 cores (the stated setting): the original code
# (when a copy with its driver is at .original/), our reference mode, ours, the bare-encoder floor and ours in bf16,
# three interleaved rounds in one process (their spread is the run-to-run spread). Needs no `datasets`/`soundfile`
# when the timed utterances were saved beforehand (UTTERANCES, written by any earlier run with --utterances).
# Usage: benchmarks/speed_device.sh [extra bench_pretraining_throughput.py flags]
set -euo pipefail
cd "$(dirname "$0")/.."
CORES=${CORES:-0,1}
UTTERANCES=${UTTERANCES:-.original/utterances.pt}
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 HF_HUB_OFFLINE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PYTHON=${PYTHON:-python}
echo "host: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), pinned to $CORES; $($PYTHON -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)')"
start=$(date +%s)
taskset -c "$CORES" "$PYTHON" -u benchmarks/bench_pretraining_throughput.py --utterances "$UTTERANCES" "$@"
echo "total wall time: $(( $(date +%s) - start )) s"
