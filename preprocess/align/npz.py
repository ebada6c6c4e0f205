"""Writing an .npz in numpy.savez's layout, where the big arrays arrive in chunks and are never whole in memory.

numpy.savez needs every array in memory; the align step's crops and audio grow with the video's length,
so they are handed over as `Chunked` (shape, dtype and a function yielding consecutive row blocks) and
streamed into the zip entry. np.load reads the result like any savez output (uncompressed, zip64 entries).
"""
from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from numpy.lib import format as npy_format


@dataclass(frozen=True)
class Chunked:
    """An array given as consecutive blocks of rows along its first axis."""
    shape: tuple[int, ...]
    dtype: np.dtype
    chunks: Callable[[], Iterable[np.ndarray]]


def save_npz(file, arrays: dict[str, np.ndarray | Chunked]) -> None:
    """Like numpy.savez(file, **arrays) (no pickles), streaming the Chunked entries."""
    with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key, value in arrays.items():
            # force_zip64 as numpy.savez does: the entry's size is not known when it is opened (numpy gh-10776)
            with archive.open(key + ".npy", "w", force_zip64=True) as entry:
                if isinstance(value, Chunked):
                    _write_chunked(entry, value)
                else:
                    npy_format.write_array(entry, np.asanyarray(value), allow_pickle=False)


def _write_chunked(entry, value: Chunked) -> None:
    dtype = np.dtype(value.dtype)
    header = {"descr": npy_format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(value.shape)}
    npy_format.write_array_header_1_0(entry, header)  # the version numpy picks for headers this small
    row_shape, rows = tuple(value.shape[1:]), 0
    for chunk in value.chunks():
        chunk = np.ascontiguousarray(chunk, dtype)
        if chunk.shape[1:] != row_shape:
            raise ValueError(f"chunk of rows {chunk.shape[1:]} for an array of rows {row_shape}")
        entry.write(memoryview(chunk.reshape(-1).view(np.uint8)))
        rows += len(chunk)
    if rows != value.shape[0]:  # a short entry would load as garbage or fail far from here
        raise ValueError(f"chunks gave {rows} rows for an array of {value.shape[0]}")
