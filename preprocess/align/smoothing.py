"""Landmark gaps, outliers and smoothing: frames whose landmarks jump off the trajectory (treated as missing),
interpolate short gaps, split at long ones, centred moving average, and the motion-following smoothing built on
it (moving average of the face shape, lag-corrected head position)."""
from __future__ import annotations

import numpy as np

from preprocess.align.geometry import ALIGN_POINTS, TEMPLATE

# The head's position for `follow_motion`: the nose tip and eye corners (the points the canonical transform is
# fitted to), which speech does not move; the centroid of all 68 points moves with the jaw.
ANCHOR = ALIGN_POINTS


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


def trajectory(points: np.ndarray, half_window: int, chunk: int = 1024) -> np.ndarray:
    """Where each frame's points should be, judged by the frames around it: the median over +-half_window
    frames (clipped at the ends) of their points, each carried to this frame's time along the face's velocity
    there (the median frame-to-frame step of the points' centroid in the window).

    A median, not the moving average the smoothing uses: an average is pulled towards an outlier, a median of
    2h+1 frames ignores up to about h of them. Carried along the velocity, it follows a head that moves
    steadily without lag, also where the window is one-sided (a plain median lags there by h/2 frames).
    points: (T, N, 2); returns float64. Worked in runs of `chunk` frames, so memory stays bounded."""
    points = np.asarray(points, np.float64)
    n, h = len(points), max(int(half_window), 1)
    if n < 2:
        return points.copy()
    pad = np.full((h, *points.shape[1:]), np.nan)
    frames = np.lib.stride_tricks.sliding_window_view(np.concatenate([pad, points, pad]), 2 * h + 1, axis=0)
    steps = np.diff(points.mean(1), axis=0)  # (T-1, 2): the centroid's
    steps = np.lib.stride_tricks.sliding_window_view(np.concatenate([pad[:, 0], steps, pad[:, 0]]), 2 * h,
                                                     axis=0)  # frame t: the steps k = t-h .. t+h-1
    velocity = np.empty((n, 2))
    inner = slice(h, max(n - h, h))  # windows without padding: np.median, far faster than nanmedian
    velocity[inner] = np.median(steps[inner], axis=-1)
    for edge in (slice(0, min(h, n)), slice(max(n - h, h), n)):
        velocity[edge] = np.nanmedian(steps[edge], axis=-1)
    back = np.arange(h, -h - 1, -1, dtype=np.float64)  # t - s for the frames s = t-h .. t+h of the window
    out = np.empty_like(points)
    inner = range(h, n - h)  # windows without padding: a partition, several times faster than nanmedian
    for lo, hi, median in [(lo, min(lo + chunk, inner.stop), _median) for lo in range(h, inner.stop, chunk)] + \
            [(0, min(h, n), np.nanmedian), (max(n - h, h), n, np.nanmedian)]:
        if hi > lo:
            out[lo:hi] = median(frames[lo:hi] + back * velocity[lo:hi, None, :, None], axis=-1)
    return out


def _median(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """np.median along an odd last axis of NaN-free values, by partition (np.median's checks cost 4x on short
    axes)."""
    assert axis == -1 and values.shape[-1] % 2 == 1
    k = values.shape[-1] // 2
    return np.partition(values, k, axis=-1)[..., k]


# Fewer frames either side and the outlier's own two steps (there and back) decide the velocity of its neighbours,
# which then count as outliers too; +-3 frames outvote up to 3 outlying ones.
MIN_JUMP_WINDOW = 3


def landmark_jumps(points: np.ndarray, valid: np.ndarray, half_window: int, chunk: int = 128) -> np.ndarray:
    """(T,) how far each frame's landmarks sit from the trajectory of the frames around it (`trajectory`, over
    +-half_window frames, at least +-MIN_JUMP_WINDOW): the mean distance of its 68 points from where the trajectory
    puts them, in mouth widths (points 48 to 54) there; 0 on frames not `valid`, which are interpolated over first.
    points: (T, 68, 2) frame px. Worked in runs of `chunk` frames (with the windows' margins): memory does not grow
    with the segment's length."""
    valid = np.asarray(valid, bool)
    n, h = len(points), max(int(half_window), MIN_JUMP_WINDOW)
    jumps = np.zeros(n)
    known = np.flatnonzero(valid)
    if len(known) < 3:  # too few frames to tell a trajectory from an outlier
        return jumps
    for lo in range(0, n, chunk):
        hi = min(lo + chunk, n)
        a, b = max(lo - h, 0), min(hi + h, n)  # every window of frames lo .. hi-1 lies inside a .. b-1
        filled = _interpolated(points, known, a, b)
        reference = trajectory(filled, h)[lo - a:hi - a]
        filled = filled[lo - a:hi - a]
        width = np.linalg.norm(reference[:, 54] - reference[:, 48], axis=-1)
        distance = np.linalg.norm(filled - reference, axis=-1).mean(-1)
        jumps[lo:hi] = np.where(valid[lo:hi], distance / np.maximum(width, 1e-6), 0.0)
    return jumps


def _interpolated(points: np.ndarray, known: np.ndarray, a: int, b: int) -> np.ndarray:
    """Frames a .. b-1 of `points` as float64, those not in `known` (sorted valid frames) interpolated as
    `interpolate` does, from the valid frames in a .. b-1 and the nearest one on either side."""
    if np.searchsorted(known, b) - np.searchsorted(known, a) == b - a:
        return np.asarray(points[a:b], np.float64)  # every frame valid: nothing to interpolate
    first = max(int(np.searchsorted(known, a, side="right")) - 1, 0)
    last = min(int(np.searchsorted(known, b - 1, side="left")) + 1, len(known))
    near = known[first:last]
    samples = np.asarray(points[near], np.float64).reshape(len(near), -1)
    t = np.arange(a, b)
    out = np.empty((b - a, samples.shape[1]))
    for k in range(samples.shape[1]):
        out[:, k] = np.interp(t, near, samples[:, k])
    return out.reshape((b - a, *np.shape(points)[1:]))


def landmark_outliers(points: np.ndarray, valid: np.ndarray, half_window: int, max_jump: float) -> np.ndarray:
    """(T,) bool: valid frames whose landmarks jump more than `max_jump` mouth widths off the trajectory
    (landmark_jumps); the align stage treats them as missing. max_jump 0: none."""
    if max_jump <= 0:
        return np.zeros(len(points), bool)
    return landmark_jumps(points, valid, half_window) > max_jump


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


def follow_motion(points: np.ndarray, half_window: int, speed: float) -> np.ndarray:
    """Moving average of the landmarks, plus the part of the head's motion that the average misses.

    The face's shape keeps today's +-half_window moving average. The head's position (the centroid of the
    ANCHOR points) is where a moving average lags: wherever the head accelerates (turns, starts, stops). The gap
    from its moving average to an order-2 Savitzky-Golay fit of the same window estimates that lag, `d`, and
    is added to every landmark with a gain g = s^4 / (s^4 + speed^4), s the fastest the head moves within the
    window (canonical-face px, i.e. crop px, per frame). On a still head, whose landmarks shake with speech and
    detector noise, g is near 0 (the moving average's jitter); on a moving one near 1 (the quadratic fit's
    tracking). points: (T, N, 2) frame px, N = 68 (iBUG numbering).
    """
    points = np.asarray(points, np.float64)
    out = moving_average(points, half_window)
    n = len(points)
    if half_window <= 0 or n < 3:
        return out
    anchor = points[:, list(ANCHOR)]
    centre = anchor.mean(axis=1)  # (T, 2)
    average = moving_average(centre, half_window)
    d = local_quadratic(centre, half_window) - average
    spread = np.sqrt(((anchor - centre[:, None]) ** 2).sum(-1).mean(-1))  # (T,) frame px
    template = TEMPLATE - TEMPLATE.mean(0)
    to_crop_px = np.sqrt((template ** 2).sum(-1).mean()) / max(float(np.median(spread)), 1e-6)
    velocity = np.linalg.norm(np.gradient(average, axis=0), axis=-1) * to_crop_px
    s = window_max(velocity, half_window)
    gain = s ** 4 / (s ** 4 + speed ** 4) if speed > 0 else np.ones(n)
    return out + (gain[:, None] * d)[:, None, :]


def window_max(x: np.ndarray, half_window: int) -> np.ndarray:
    """Max of a 1-D array over +-half_window (clipped at the ends)."""
    padded = np.pad(np.asarray(x, np.float64), half_window, mode="edge")
    return np.lib.stride_tricks.sliding_window_view(padded, 2 * half_window + 1).max(-1)


SMOOTHING = ("follow", "moving_average")


def smooth_landmarks(points: np.ndarray, method: str, half_window: int, speed: float) -> np.ndarray:
    """The align stage's landmark smoothing (params align.smoothing, smooth_window, follow_speed)."""
    if method == "moving_average":
        return moving_average(points, half_window)
    if method == "follow":
        return follow_motion(points, half_window, speed)
    raise ValueError(f"align.smoothing {method!r} is not one of {', '.join(SMOOTHING)}")
