"""File writes that survive a kill: write beside the target, flush to disk, then rename; and file hashes."""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
from pathlib import Path

TMP_MARK = ".tmp-"


def tmp_path_for(path: Path) -> Path:
    # Same folder (rename is atomic only within one filesystem); the marker lets cleanup find leftovers.
    return path.with_name(f"{TMP_MARK}{os.getpid()}-{path.name}")


@contextlib.contextmanager
def scratch_path(beside: Path):
    """Yield a temporary path next to `beside` that is always removed afterwards."""
    beside = Path(beside)
    beside.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_for(beside)
    try:
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_path(path: Path):
    """Yield a temporary path to write; on success it replaces `path`, on failure it is removed."""
    with scratch_path(path) as tmp:
        yield tmp
        replace_durably(tmp, path)


def replace_durably(tmp: Path, path: Path) -> None:
    """Rename `tmp` to `path` once its data is on disk: a power cut leaves the old file or the new, never an
    empty one under the final name."""
    fsync_file(tmp)
    os.replace(tmp, path)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_parquet_atomic(path: Path, frame) -> None:
    """A pandas DataFrame as Parquet, atomically (no index column: rows are self-describing)."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    write_bytes_atomic(path, buffer.getvalue())


def remove_leftover_tmp_files(folder: Path) -> int:
    """Delete temporary files a killed run left behind; returns how many."""
    if not folder.exists():
        return 0
    removed = 0
    for leftover in folder.rglob(f"{TMP_MARK}*"):
        if leftover.is_file():
            leftover.unlink()
            removed += 1
    return removed


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prune_outputs(folders, keep: set[str]) -> None:
    """Delete the per-video files (named <video_id>.<ext>) in `folders` whose video is not in `keep`:
    a stage's outputs exist for exactly the videos it passed on."""
    for folder in folders:
        if folder.exists():
            for path in folder.iterdir():
                if path.is_file() and path.stem not in keep:
                    path.unlink()
