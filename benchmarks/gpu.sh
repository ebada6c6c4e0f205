#!/usr/bin/env bash
# The GPU benchmark in one command, for a GPU machine lent for a few minutes (docs/benchmarks.md, "GPU"):
#
#     bash benchmarks/gpu.sh [bench_gpu.py options]      # e.g. --retinaface weights/retinaface_mobilenet0.25.pth
#
# It needs a Python with torch, transformers, opencv, scikit-image and PyYAML ($PYTHON, default python3).
# Packages that machine lacks (face-alignment, ruamel.yaml) may come as wheels in .whl/ (`pip download --no-deps
# -d .whl face-alignment==1.5.0 ruamel.yaml==0.19.1`): they are installed into a scratch folder first.
# The whole run is capped at 8 minutes; it prints one table (bench_gpu.py).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
if compgen -G ".whl/*.whl" > /dev/null; then
  site=$(mktemp -d)
  "$py" -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl
  export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
exec timeout 480 "$py" benchmarks/bench_gpu.py "$@"
