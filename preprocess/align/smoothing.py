"""Landmark gaps and smoothing: interpolate short gaps, split at long ones, centred moving average, and the
motion-following smoothing built on it (moving average of the face shape, lag-corrected head position)."""
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


def local_quadratic(points: np.ndarray, half_window: int) -> np.ndarray:
    """Centred Savitzky-Golay filter of order 2 (local quadratic fit, its value at the centre frame) over
    +-half_window frames; like `moving_average`, the window shrinks symmetrically near the ends (down to the
    raw value on the first and last frame). Unbiased on constant-acceleration motion, noisier than the
    moving average of the same window."""
    points = np.asarray(points, np.float64)
    n = len(points)
    if half_window <= 0 or n < 3:
        return points.copy()
    flat = points.reshape(n, -1)
    out = np.empty_like(flat)
    t = np.arange(n)
    h_of_t = np.minimum(half_window, np.minimum(t, n - 1 - t))
    for h in np.unique(h_of_t):
        rows = np.flatnonzero(h_of_t == h)
        w = savgol_weights(int(h))
        out[rows] = np.einsum("k,tkc->tc", w, flat[rows[:, None] + np.arange(-h, h + 1)])
    return out.reshape(points.shape)


def savgol_weights(half_window: int) -> np.ndarray:
    """Weights (2h+1,) of the order-2 least-squares fit's value at the centre (h = 0: the raw value)."""
    k = np.arange(-half_window, half_window + 1, dtype=np.float64)
    if half_window == 0:
        return np.ones(1)
    vander = np.stack([np.ones_like(k), k, k * k], axis=1)
    return np.linalg.pinv(vander)[0]


def noise_sigma(track: np.ndarray) -> float:
    """Robust per-axis noise level (px) of a (T, D) track: median absolute second difference, scaled so
    white noise of std s gives s (its second difference has std s*sqrt(6); MAD -> std: x1.4826)."""
    track = np.asarray(track, np.float64)
    if len(track) < 3:
        return 0.0
    d2 = track[2:] - 2 * track[1:-1] + track[:-2]
    return float(np.median(np.abs(d2)) * 1.4826 / np.sqrt(6.0))


def follow_motion(points: np.ndarray, half_window: int, threshold: float) -> np.ndarray:
    """Moving average of the landmarks, plus the part of the head's motion that the average misses.

    The face's shape (the landmarks relative to their centroid) keeps today's +-half_window moving average.
    The centroid's moving average lags wherever the head accelerates (turns, starts, stops); the gap to an
    order-2 Savitzky-Golay fit of the same window estimates that lag, `d`. On a still head `d` is noise, so it
    is added back only with the gain |d|^2 / (|d|^2 + tau^2), tau = `threshold` x the noise `d` would have
    from the track's own landmark noise: near 0 on still heads (the moving average's jitter), near 1 where
    the head moves (the quadratic fit's tracking). points: (T, N, 2) frame px.
    """
    points = np.asarray(points, np.float64)
    out = moving_average(points, half_window)
    n = len(points)
    if half_window <= 0 or n < 3:
        return out
    centroid = points.mean(axis=1)  # (T, 2)
    d = local_quadratic(centroid, half_window) - moving_average(centroid, half_window)
    lag_weights = savgol_weights(half_window) - 1.0 / (2 * half_window + 1)  # d's weights in the interior
    tau = threshold * noise_sigma(centroid) * float(np.linalg.norm(lag_weights))
    d2 = (d ** 2).sum(-1)
    gain = np.divide(d2, d2 + tau ** 2, out=np.zeros_like(d2), where=d2 > 0)
    return out + (gain[:, None] * d)[:, None, :]


SMOOTHING = ("follow", "moving_average")


def smooth_landmarks(points: np.ndarray, method: str, half_window: int, threshold: float) -> np.ndarray:
    """The align stage's landmark smoothing (params align.smoothing, smooth_window, follow_threshold)."""
    if method == "moving_average":
        return moving_average(points, half_window)
    if method == "follow":
        return follow_motion(points, half_window, threshold)
    raise ValueError(f"align.smoothing {method!r} is not one of {', '.join(SMOOTHING)}")
