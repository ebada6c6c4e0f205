"""dvc repro drives the per-corpus stages: cached reruns, and a new video or corpus redoes only itself."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO, copy_clip

from pipeline.registry import add_corpus

pytestmark = pytest.mark.slow  # dvc repro


def dvc(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "AVLIPS_ROOT": str(cwd), "AVLIPS_WORKERS": "1",
           "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["dvc", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_repro_is_cached_and_incremental(project, clips):
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(REPO / name, project / name)
    for package in ("pipeline", "preprocess"):  # the stages' code deps
        shutil.copytree(REPO / package, project / package, ignore=shutil.ignore_patterns("__pycache__"))
    dvc("init", "--no-scm", "-q", cwd=project)
    for clip in clips.grid[:2]:
        copy_clip(clip, project / "raw_a")
    add_corpus("corpus_a", "raw_a", pattern="*.mpg", role="pretrain", label="real")

    first = dvc("repro", "resample@corpus_a", cwd=project)
    assert "2 ok, 0 failed, 0 skipped (0 already done, 2 processed now)" in first.stderr + first.stdout

    again = dvc("repro", "resample@corpus_a", cwd=project)
    assert "didn't change" in again.stdout and "processed now" not in again.stderr

    copy_clip(clips.grid[2], project / "raw_a")
    add_corpus("corpus_a", "raw_a")
    assert "resample@corpus_a" in dvc("status", cwd=project).stdout
    third = dvc("repro", "resample@corpus_a", cwd=project)
    assert "3 ok, 0 failed, 0 skipped (2 already done, 1 processed now)" in third.stderr + third.stdout

    copy_clip(clips.grid[3], project / "raw_b")
    add_corpus("corpus_b", "raw_b", pattern="*.mpg", role="eval", label="fake", method="Wav2Lip")
    status = dvc("status", "resample@corpus_a", "resample@corpus_b", cwd=project).stdout
    assert "resample@corpus_b" in status and "resample@corpus_a" not in status  # a new corpus leaves others alone
    fourth = dvc("repro", "resample@corpus_a", "resample@corpus_b", cwd=project)
    out = fourth.stderr + fourth.stdout
    assert "resample@corpus_b: 1 ok" in out and "resample@corpus_a:" not in out
