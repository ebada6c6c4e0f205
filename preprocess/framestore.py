"""A disk-backed array of fixed-shape rows (frames, patches, crops) for what must outlive a decode loop.

The track and align steps need per-frame pictures after the whole video is decoded (the tracks, or the
smoothed landmarks, are known only then). Holding them in memory grows with the video's length; here they
go to a scratch file beside the step's output and come back in short runs of rows, so memory stays bounded.

Plain pread/pwrite, not numpy.memmap: pages of a mapped file count in the process's RSS until unmapped,
so a memmap read end to end grows RSS by the whole file; the page cache behind pread does not.
The file is unlinked as soon as it is open (the kernel frees it when the descriptor closes, even if the
process is killed), inside pipeline.atomic.scratch_path, which removes it on every other path too.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from preprocess.fileio import scratch_path


class FrameStore:
    """Rows of one shape and dtype in an open file: appended in order or put at any index, read in runs."""

    def __init__(self, fd: int, row_shape: tuple[int, ...] | None = None, dtype=np.uint8):
        self._fd = fd
        self.dtype = np.dtype(dtype)
        self.row_shape: tuple[int, ...] | None = None
        self.row_bytes = 0
        self.rows = 0  # rows written so far (the highest index + 1)
        if row_shape is not None:
            self._set_shape(tuple(row_shape))

    def _set_shape(self, row_shape: tuple[int, ...]) -> None:
        self.row_shape = row_shape
        self.row_bytes = int(np.prod(row_shape, dtype=np.int64)) * self.dtype.itemsize

    def append(self, rows: np.ndarray) -> None:
        self.put(self.rows, rows)

    def put(self, index: int, rows: np.ndarray) -> None:
        """Write rows[0], rows[1], ... at rows index, index + 1, ..."""
        rows = np.ascontiguousarray(rows, self.dtype)
        if self.row_shape is None:  # a decoder's frame size is known only from its first frame
            self._set_shape(rows.shape[1:])
        if rows.shape[1:] != self.row_shape:
            raise ValueError(f"rows of shape {rows.shape[1:]} in a store of {self.row_shape}")
        data = memoryview(rows.reshape(-1).view(np.uint8))
        offset = index * self.row_bytes
        while len(data):  # pwrite may write less than asked (signals, huge writes)
            done = os.pwrite(self._fd, data, offset)
            data, offset = data[done:], offset + done
        self.rows = max(self.rows, index + len(rows))

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as a new writable array."""
        if not 0 <= start <= stop <= self.rows:
            raise IndexError(f"rows [{start}, {stop}) of a store holding {self.rows}")
        out = np.empty((stop - start, *self.row_shape), self.dtype)
        view = memoryview(out.reshape(-1).view(np.uint8))
        offset, filled = start * self.row_bytes, 0
        while filled < len(view):
            got = os.preadv(self._fd, [view[filled:]], offset + filled)
            if got == 0:
                raise EOFError("the frame store file is shorter than its rows")
            filled += got
        return out

    def runs(self, start: int, stop: int, chunk: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, rows) for [start, stop) in runs of at most `chunk` rows."""
        for lo in range(start, stop, chunk):
            hi = min(stop, lo + chunk)
            yield lo, self.read(lo, hi)


@contextlib.contextmanager
def frame_store(beside: Path, row_shape: tuple[int, ...] | None = None, dtype=np.uint8) -> Iterator[FrameStore]:
    """A FrameStore in a scratch file next to `beside` (the step's output), gone when the block ends.

    `row_shape` None: taken from the first rows written."""
    with scratch_path(beside) as path:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            path.unlink()
            yield FrameStore(fd, row_shape, dtype)
        finally:
            os.close(fd)
