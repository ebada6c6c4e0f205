"""Writing an .npz in numpy.savez's layout with the same bytes for the same arrays.

numpy.savez stamps every zip entry with the current time, so two identical runs give different files (and
different DVC hashes); here every entry gets the zip epoch (1980-01-01) instead. np.load reads the result like
any savez output (uncompressed, zip64 entries, no pickles).
"""
from __future__ import annotations

import zipfile

import numpy as np
from numpy.lib import format as npy_format

EPOCH = (1980, 1, 1, 0, 0, 0)


def save_npz(file, arrays: dict[str, np.ndarray]) -> None:
    """Like numpy.savez(file, **arrays) (no pickles), with fixed entry timestamps and permissions."""
    with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key, value in arrays.items():
            info = zipfile.ZipInfo(key + ".npy", date_time=EPOCH)
            info.external_attr = 0o644 << 16
            # force_zip64 as numpy.savez does: the entry's size is not known when it is opened (numpy gh-10776)
            with archive.open(info, "w", force_zip64=True) as entry:
                npy_format.write_array(entry, np.asanyarray(value), allow_pickle=False)
