"""Artifacts of lip-sync deepfakes: how the generated mouth moves, and how it is pasted into the real frames.

A generator re-draws the mouth, so a fake differs from its real clip twice: its mouth motion (the openness curve
the face is rendered with: `jittered_openness`, `damped_openness`) and its pixels around the mouth (`lowres_seam`,
`jitter`, which change only a box around the mouth, see `mouth_box`). The motion part is what a lip-motion
detector is built to see: pixel artifacts alone are what the pretraining augmentations (blur, noise, brightness,
random crop) and a frozen frontend are meant to be robust to (paper Sec. 4.5.3).
The third method, lip-sync mismatch, has no artifact of either kind: the mouth is driven by a different utterance
than the one heard (see plan.render_clip).
"""
from __future__ import annotations

import cv2
import numpy as np

METHODS = ("lowres_seam", "jitter", "lipsync")


def mouth_box(centre: np.ndarray, mouth_width: float, factor: float, shape: tuple[int, int]) -> tuple[int, ...]:
    """Integer box x0, y0, x1, y1 of side `factor` x mouth width around the mouth, clipped to the frame."""
    half = factor * mouth_width / 2
    cx, cy = centre
    x0, y0 = int(round(cx - half)), int(round(cy - half * 0.85))
    x1, y1 = int(round(cx + half)), int(round(cy + half * 1.15))  # reach the lower lip and chin
    return max(x0, 0), max(y0, 0), min(x1, shape[1]), min(y1, shape[0])


def jittered_openness(openness: np.ndarray, rng: np.random.Generator, spread: tuple[float, float] = (1.2, 1.6),
                      window: int = 6) -> np.ndarray:
    """A mouth generated frame by frame, without a model of when speech pauses: the true openness plus a
    tremble that never lets the lips close, the magnitude of noise averaged over `window` frames (a few hertz,
    as a generator's short temporal input makes it) and scaled per clip by a factor drawn from `spread`.
    Zero-mean or per-frame wobble of the same size is not enough: a lip-motion frontend trained on real speech
    averages it away (its 3D stem spans 5 frames), and the detector then sees only the pixel jitter, which its
    frozen frontend was pretrained to ignore."""
    noise = np.convolve(rng.standard_normal(len(openness) + window - 1), np.ones(window) / window, mode="valid")
    return np.clip(openness + rng.uniform(*spread) * np.abs(noise), 0, 1)


def damped_openness(openness: np.ndarray, gain: float = 0.5, window: int = 5) -> np.ndarray:
    """A low-resolution generator's under-articulated mouth: the opening smoothed over `window` frames
    (centred, so it stays in sync) and scaled by `gain`, so the mouth never opens wide or closes sharply."""
    padded = np.pad(openness, window // 2, mode="edge")
    return gain * np.convolve(padded, np.ones(window) / window, mode="valid")


def lowres_seam(frames: np.ndarray, mouth: np.ndarray, mouth_width: float, rng: np.random.Generator,
                factor: float = 1.8, downscale: int = 4) -> np.ndarray:
    """The mouth re-generated at 1/`downscale` resolution, colour-shifted slightly and pasted back with a
    rectangular seam: the generator's output never quite matches the face it is blended into."""
    gain = 1 + rng.uniform(-0.06, 0.06, 3)
    out = frames.copy()
    for t in range(len(frames)):
        x0, y0, x1, y1 = mouth_box(mouth[t], mouth_width, factor, frames.shape[1:3])
        patch = frames[t, y0:y1, x0:x1]
        small = cv2.resize(patch, (max((x1 - x0) // downscale, 1), max((y1 - y0) // downscale, 1)),
                           interpolation=cv2.INTER_AREA)
        up = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        out[t, y0:y1, x0:x1] = np.clip(up * gain + 0.5, 0, 255).astype(np.uint8)
    return out


def jitter(frames: np.ndarray, mouth: np.ndarray, mouth_width: float, rng: np.random.Generator,
           factor: float = 1.5, shift: int = 2, flicker: float = 0.06) -> np.ndarray:
    """The mouth region shifted by up to `shift` px and brightened or darkened independently every frame,
    through a soft elliptical mask: a mouth generated frame by frame without temporal consistency."""
    out = frames.copy()
    for t in range(len(frames)):
        x0, y0, x1, y1 = mouth_box(mouth[t], mouth_width, factor, frames.shape[1:3])
        dx, dy = rng.integers(-shift, shift + 1, 2)
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        moved = cv2.warpAffine(frames[t], m, (frames.shape[2], frames.shape[1]), borderMode=cv2.BORDER_REFLECT)
        patch = moved[y0:y1, x0:x1].astype(np.float32) * (1 + rng.uniform(-flicker, flicker))
        h, w = y1 - y0, x1 - x0
        yy, xx = np.mgrid[0:h, 0:w]
        r = np.hypot((xx - (w - 1) / 2) / (w / 2), (yy - (h - 1) / 2) / (h / 2))
        alpha = np.clip((1 - r) / 0.3, 0, 1)[..., None]
        base = frames[t, y0:y1, x0:x1].astype(np.float32)
        out[t, y0:y1, x0:x1] = np.clip(base * (1 - alpha) + patch * alpha + 0.5, 0, 255).astype(np.uint8)
    return out
