"""Where every generated file lives. One place, so stages and tools agree."""
from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

PARAMS_FILE = "params.yaml"


_thread = threading.local()


def project_root() -> Path:
    """The project root: the one set for this thread (a dask worker thread running a task of some project),
    else $AVLIPS_ROOT when set (tests), else the current directory (dvc runs stages there)."""
    return Path(getattr(_thread, "root", None) or os.environ.get("AVLIPS_ROOT", ".")).resolve()


@contextlib.contextmanager
def thread_root(root: str):
    """Make `root` this thread's project root: threads of one shared worker may run tasks of several projects."""
    previous, _thread.root = getattr(_thread, "root", None), root
    try:
        yield
    finally:
        _thread.root = previous


def params_path() -> Path:
    return project_root() / PARAMS_FILE


def source_manifest_path(corpus: str) -> Path:
    return project_root() / "data_manifests" / f"{corpus}.parquet"


def stage_dir(stage: str, corpus: str) -> Path:
    """Output folder of a per-corpus stage, e.g. data/resample/vox2_dev."""
    return project_root() / "data" / stage / corpus


def status_dir(stage: str, corpus: str) -> Path:
    """Per-video status records (one JSON each), written last so they mark finished work."""
    return stage_dir(stage, corpus) / "status"


def status_table_path(stage: str, corpus: str) -> Path:
    return stage_dir(stage, corpus) / "status.parquet"


def project_path(path: str) -> Path:
    """A path from params.yaml: absolute, or relative to the project root."""
    resolved = Path(path).expanduser()
    return resolved if resolved.is_absolute() else project_root() / resolved
