"""Landmark gaps and smoothing: interpolate short gaps, split at long ones, centred moving average."""
from __future__ import annotations

import numpy as np


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True in a 1-D boolean array."""
    padded = np.concatenate([[False], np.asarray(mask, bool), [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def split_pieces(valid: np.ndarray, max_gap: int) -> list[tuple[int, int]]:
    """Pieces [start, end) of a segment separated by missing-landmark runs longer than `max_gap`.

    Short gaps stay inside a piece (to be interpolated); a piece starts and ends on a valid frame,
    except that short missing runs at the very start or end of the segment are kept (held from the
    nearest valid frame), as the track already vouches for the face there.
    """
    valid = np.asarray(valid, bool)
    n = len(valid)
    if not valid.any():
        return []
    cuts = [(s, e) for s, e in runs(~valid) if e - s > max_gap]
    pieces, start = [], 0
    for s, e in cuts:
        if s > start:
            pieces.append((start, s))
        start = e
    if start < n:
        pieces.append((start, n))
    return [(s, e) for s, e in pieces if valid[s:e].any()]


def interpolate(points: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Fill frames where `valid` is False by linear interpolation in time (edges: nearest valid frame).

    points: (T, ...) float; returns a float64 copy.
    """
    points = np.asarray(points, np.float64)
    valid = np.asarray(valid, bool)
    out = points.copy()
    if valid.all() or not valid.any():
        return out
    t = np.arange(len(points))
    flat = out.reshape(len(points), -1)
    good = flat[valid]
    for k in range(flat.shape[1]):
        flat[:, k] = np.interp(t, t[valid], good[:, k])
    return flat.reshape(points.shape)


def moving_average(points: np.ndarray, half_window: int) -> np.ndarray:
    """Centred moving average over +-half_window frames; near the ends the window shrinks symmetrically
    to what is available on both sides (so the ends are not pulled towards the interior)."""
    points = np.asarray(points, np.float64)
    n = len(points)
    if half_window <= 0 or n < 2:
        return points.copy()
    flat = points.reshape(n, -1)
    csum = np.concatenate([np.zeros((1, flat.shape[1])), np.cumsum(flat, axis=0)])
    t = np.arange(n)
    h = np.minimum(half_window, np.minimum(t, n - 1 - t))
    out = (csum[t + h + 1] - csum[t - h]) / (2 * h + 1)[:, None]
    return out.reshape(points.shape)
