"""The canonical 256x256 face (LipForensics / auto_avsr / av_hubert geometry) and similarity transforms.

Transforms are 2x3 float64 matrices mapping (x, y, 1) column vectors: dst = M @ [x, y, 1].
"""
from __future__ import annotations

import numpy as np

CANVAS = 256
ALIGN_POINTS = (33, 36, 39, 42, 45)  # nose tip, eye corners
TEMPLATE = np.array([(128.9, 137.3), (92.5, 94.4), (112.8, 94.9), (145.5, 94.5), (166.7, 93.6)])
MOUTH_POINTS = slice(48, 68)
MOUTH_CENTRE = np.array([129.3, 157.8])
MOUTH_WIDTH = 45.0  # pt 48 to pt 54 in the canonical face


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection): Umeyama 1991."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1
    rot = u @ np.diag(sign) @ vt
    var = (s ** 2).sum() / len(src)
    scale = (sig * sign).sum() / var if var > 0 else 1.0
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - m[:, :2] @ mu_s
    return m


def to_canonical(landmarks: np.ndarray) -> np.ndarray:
    """Transform (2x3) from image coordinates to the canonical face, from one frame's 68 landmarks."""
    return similarity(landmarks[list(ALIGN_POINTS)], TEMPLATE)


def apply(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map points (..., 2) with one 2x3 transform, or a stack (T, 2, 3) with points (T, N, 2)."""
    points = np.asarray(points, np.float64)
    if m.ndim == 3:
        return np.einsum("tij,tnj->tni", m[:, :, :2], points) + m[:, None, :, 2]
    return points @ m[:, :2].T + m[:, 2]


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The transform doing b first, then a."""
    out = np.empty((2, 3))
    out[:, :2] = a[:, :2] @ b[:, :2]
    out[:, 2] = a[:, :2] @ b[:, 2] + a[:, 2]
    return out


def invert(m: np.ndarray) -> np.ndarray:
    inv = np.empty((2, 3))
    inv[:, :2] = np.linalg.inv(m[:, :2])
    inv[:, 2] = -inv[:, :2] @ m[:, 2]
    return inv

