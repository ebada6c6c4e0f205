"""File writes that survive a kill: write beside the target, flush to disk, then rename; and file hashes.

A folder that cannot take a write (a full disk, a quota, a read-only filesystem, no permission) is no fault of
the video being processed: every write there would fail the same way. Writes through here raise NotWritable,
one plain line naming the folder, and leave nothing behind but what was already whole; the stage stops, and a
rerun once the cause is gone does what was left.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
from pathlib import Path

TMP_MARK = ".tmp-"
# errno -> what it means for the folder; EACCES/EPERM only count for paths inside the folder (not an input)
WRITE_FAULTS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "the disk quota is used up",
                errno.EROFS: "the filesystem is read-only", errno.EACCES: "no permission to write there",
                errno.EPERM: "no permission to write there"}


class NotWritable(RuntimeError):
    """A folder an output goes to cannot take it: the stage stops with this message (one line, no traceback)."""


def not_writable(exc: OSError, folder: Path) -> NotWritable | None:
    """The NotWritable that an OSError raised while writing into `folder` means; None for any other error."""
    folder = Path(folder)
    if exc.errno not in WRITE_FAULTS:
        return None
    if exc.errno in (errno.EACCES, errno.EPERM) and exc.filename is not None \
            and folder.resolve() not in [Path(exc.filename).resolve(), *Path(exc.filename).resolve().parents]:
        return None  # an input it could not read
    return NotWritable(f"cannot write to {folder}: {WRITE_FAULTS[exc.errno]}. Free some space or make the folder "
                       f"writable, then run the stage again: it goes on from where it stopped")


@contextlib.contextmanager
def writing_into(folder: Path):
    """Turn a write fault (WRITE_FAULTS) inside the block into NotWritable naming `folder`."""
    try:
        yield
    except OSError as exc:
        fault = not_writable(exc, folder)
        if fault is None:
            raise
        raise fault from None


def tmp_path_for(path: Path) -> Path:
    # Same folder (rename is atomic only within one filesystem); the marker lets cleanup find leftovers.
    return path.with_name(f"{TMP_MARK}{os.getpid()}-{path.name}")


@contextlib.contextmanager
def scratch_path(beside: Path):
    """Yield a temporary path next to `beside` that is always removed afterwards. It is created empty first, so
    a folder that cannot take files says so (NotWritable) before any work is spent on them."""
    beside = Path(beside)
    tmp = tmp_path_for(beside)
    with writing_into(beside.parent):
        try:
            beside.parent.mkdir(parents=True, exist_ok=True)
            tmp.touch()
            yield tmp
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


@contextlib.contextmanager
def atomic_path(path: Path):
    """Yield a temporary path to write; on success it replaces `path`, on failure it is removed (and a write
    fault is NotWritable)."""
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


def write_parquet_atomic(path: Path, table) -> None:
    """An Arrow table as Parquet, atomically. A pandas DataFrame (what the pipeline's commands build) is
    converted as DataFrame.to_parquet(index=False) does it: the same bytes, no index column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not isinstance(table, pa.Table):
        table = pa.Table.from_pandas(table, preserve_index=False)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def rows_to_table(rows: list[dict], schema=None, columns: list[str] | None = None):
    """Rows (dicts) as an Arrow table, column by column; a missing key or a NaN is null. `schema` (a
    pyarrow.Schema) types the columns; without one they are `columns`, in order, with inferred types (an
    empty table's are strings)."""
    import pyarrow as pa

    if schema is not None:
        return pa.table({f.name: pa.array([row.get(f.name) for row in rows], f.type, from_pandas=True)
                         for f in schema}, schema=schema)
    return pa.table({c: pa.array([row.get(c) for row in rows], None if rows else pa.string(), from_pandas=True)
                     for c in columns})


def read_parquet(path: Path, columns: list[str] | None = None):
    """A Parquet file as an Arrow table. Through ParquetFile, not pyarrow.parquet.read_table: that one imports
    pyarrow.dataset, a quarter of a second of every stage command."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as file:
        return file.read(columns=columns)


def remove_leftover_tmp_files(folder: Path) -> int:
    """Delete temporary files a killed run left behind; returns how many."""
    if not folder.exists():
        return 0
    removed = 0
    with writing_into(folder):
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
            with writing_into(folder):
                for path in folder.iterdir():
                    if path.is_file() and path.stem not in keep:
                        path.unlink()
