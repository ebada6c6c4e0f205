"""Clip-level augmentation: one draw of parameters per clip, applied identically to every frame (paper
Sec. 3.3), so the augmentation cannot break lip-audio synchrony. Then grayscale normalisation."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch


@dataclass(frozen=True)
class AugmentConfig:
    crop: int = 88
    blur_prob: float = 0.3        # motion blur: a line kernel at a random angle
    blur_kernels: tuple[int, ...] = (3, 5, 7)
    noise_prob: float = 0.3       # Gaussian noise, std drawn up to noise_std (intensities in [0, 1])
    noise_std: float = 0.05
    brightness: float = 0.2       # additive shift drawn from [-brightness, brightness]
    mean: float = 0.421           # LipForensics grayscale normalisation
    std: float = 0.165


def motion_blur_kernel(size: int, angle: float) -> np.ndarray:
    """A normalised line of length `size` through the kernel centre at `angle` radians."""
    k = np.zeros((size, size), np.float32)
    c = (size - 1) / 2
    for t in np.linspace(-c, c, 4 * size):
        k[round(c + t * np.sin(angle)), round(c + t * np.cos(angle))] = 1.0
    return k / k.sum()


def normalise(x: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    return (x - cfg.mean) / cfg.std


def augment_clip(video: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig,
                 out: np.ndarray | None = None) -> torch.Tensor:
    """uint8 (T, H, W) -> float32 (T, crop, crop), normalised, one random draw for the whole clip.

    Works in place in `out` (e.g. a row of the batch array, which saves a stack copy); OpenCV filters all
    frames in one call with frames as channels. This runs once per clip in every loader worker: it is the
    loader's hot path.
    """
    _, h, w = video.shape
    y, x = rng.integers(0, h - cfg.crop + 1), rng.integers(0, w - cfg.crop + 1)
    clip = out if out is not None else np.empty((len(video), cfg.crop, cfg.crop), np.float32)
    np.multiply(video[:, y:y + cfg.crop, x:x + cfg.crop], np.float32(1 / 255), out=clip, casting="unsafe")
    if rng.random() < cfg.blur_prob:
        k = motion_blur_kernel(int(rng.choice(cfg.blur_kernels)), float(rng.uniform(0, np.pi)))
        frames_last = cv2.filter2D(clip.transpose(1, 2, 0), -1, k, borderType=cv2.BORDER_CONSTANT)
        clip[:] = frames_last.reshape(cfg.crop, cfg.crop, -1).transpose(2, 0, 1)
    if rng.random() < cfg.noise_prob:
        std = float(rng.uniform(0, cfg.noise_std))
        clip += np.float32(std) * rng.standard_normal(clip.shape, dtype=np.float32)
    if cfg.brightness > 0:
        clip += np.float32(rng.uniform(-cfg.brightness, cfg.brightness))
    np.clip(clip, 0, 1, out=clip)
    clip -= np.float32(cfg.mean)
    clip *= np.float32(1 / cfg.std)
    return torch.from_numpy(clip)


def centre_clip(video: np.ndarray, cfg: AugmentConfig) -> torch.Tensor:
    """Evaluation view: centre crop, no augmentation."""
    _, h, w = video.shape
    y, x = (h - cfg.crop) // 2, (w - cfg.crop) // 2
    clip = torch.from_numpy(np.ascontiguousarray(video[:, y:y + cfg.crop, x:x + cfg.crop])).float() / 255
    return normalise(clip, cfg)
