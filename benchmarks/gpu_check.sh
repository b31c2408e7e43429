#!/usr/bin/env bash
# One GPU check, under 10 minutes on one H100/H200: install what is missing, run the CUDA tests
# (tests/test_cuda.py), then print issue 29's table (benchmarks/bench_gpu_throughput.py): pre-training utt/s and peak
# memory of the original code (when .original/ holds it), reference, ours and the bare encoders, in fp32 (TF32 off
# and on) and bf16, at the benchmark size and at BERT-base + HuBERT-base, and a torch.profiler summary of one step.
#
#   bash benchmarks/gpu_check.sh                   # a machine with network: pip install -e .[test]
#   TCMP_WHEELS=/path/to/wheels bash benchmarks/gpu_check.sh
#                                                  # no network: the wheels of benchmarks/gpu_wheels.txt whose
#                                                  # distribution the image lacks or has in an older version are
#                                                  # installed into $TCMP_SITE (default /tmp/tcmp-site, on PYTHONPATH)
# Without a GPU it still runs: the CUDA tests report themselves skipped and the benchmark does a CPU smoke run.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
started=$SECONDS
status=0
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
step() { echo; echo "== $* ($((SECONDS - started)) s)"; }

step "install"
if [ -n "${TCMP_WHEELS:-}" ]; then
    site=${TCMP_SITE:-/tmp/tcmp-site}
    mkdir -p "$site"
    wanted=$("$PYTHON" - "$TCMP_WHEELS" <<'EOF'
import glob, importlib.metadata, os, re, sys
from packaging.version import Version
for wheel in sorted(glob.glob(os.path.join(sys.argv[1], "*.whl"))):
    name, version = os.path.basename(wheel).split("-")[:2]
    name = re.sub(r"[-_.]+", "-", name).lower()
    try:
        present = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        present = None
    if present is not None and Version(present) >= Version(version):
        print(f"  kept the image's {name} {present}", file=sys.stderr)
    else:
        print(f"  installing {name} {version}" + (f" over the image's {present}" if present else ""), file=sys.stderr)
        print(wheel)
EOF
)
    if [ -n "$wanted" ]; then
        # shellcheck disable=SC2086
        if ! "$PYTHON" -m pip install -q --no-index --no-deps --target "$site" $wanted; then
            echo "pip failed: unpacking the wheels into $site instead"
            for wheel in $wanted; do "$PYTHON" -m zipfile -e "$wheel" "$site" || status=1; done
        fi
    fi
    export PYTHONPATH="$PWD:$site${PYTHONPATH:+:$PYTHONPATH}"
else
    "$PYTHON" -m pip install -q -e ".[test]" || status=1
fi
"$PYTHON" - <<'EOF' || status=1
import importlib, torch
versions = {name: importlib.import_module(name).__version__
            for name in ("torch", "transformers", "accelerate", "soundfile", "pytest")}
print(", ".join(f"{name} {version}" for name, version in versions.items()))
print("CUDA:", torch.cuda.get_device_name() if torch.cuda.is_available() else "none (GPU parts are skipped)")
EOF

step "CUDA tests (tests/test_cuda.py)"
timeout 300 "$PYTHON" -m pytest tests/test_cuda.py -q -rs -p no:cacheprovider || status=1

step "pre-training throughput (benchmarks/bench_gpu_throughput.py)"
timeout 420 "$PYTHON" benchmarks/bench_gpu_throughput.py --seconds "${TCMP_BENCH_SECONDS:-3}" || status=1

step "done, exit status $status"
exit $status
