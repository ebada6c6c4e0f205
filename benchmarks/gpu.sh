#!/usr/bin/env bash
# The GPU benchmark in one command, for a GPU machine lent for a few minutes (docs/benchmarks.md, "GPU"):
#
#     bash benchmarks/gpu.sh [bench_gpu.py options]      # e.g. --retinaface weights/retinaface_mobilenet0.25.pth
#
# It needs a Python ($PYTHON, default python3) with torch, torchvision, transformers, opencv, scikit-image, scipy,
# numba, tqdm and PyYAML. Packages that machine lacks (face-alignment, ruamel.yaml) may come as wheels in .whl/
# (`pip download --no-deps --only-binary=:all: -d .whl face-alignment==1.5.0 ruamel.yaml==0.19.1`): they are
# installed into a scratch folder first. The run is capped at 8 minutes; it prints one table (bench_gpu.py).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
site=$(mktemp -d)
trap 'rm -rf "$site"' EXIT
if compgen -G ".whl/*.whl" > /dev/null; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl
  export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
timeout -k 10 480 "$py" benchmarks/bench_gpu.py "$@"
