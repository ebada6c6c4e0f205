"""Signals for the weights-free audio-visual score: mouth-region motion energy and the audio energy envelope."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from preprocess.contract import SAMPLES_PER_FRAME
from preprocess.media import Pcm16

MOUTH_SIZE = (32, 16)  # (width, height) the mouth region is resampled to, so faces of any size compare alike


def mouth_region(box: np.ndarray) -> tuple[float, float, float, float]:
    """Lower-middle part of a RetinaFace box, where the mouth is on a roughly frontal face."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    w, h = x2 - x1, y2 - y1
    return x1 + 0.25 * w, y1 + 0.62 * h, x1 + 0.75 * w, y1 + 0.95 * h


def mouth_patches(gray: np.ndarray, boxes: np.ndarray, start: int) -> np.ndarray:
    """(T, 16, 32) float32 mouth patches from gray frames `gray[start + t]` and boxes in the same pixels."""
    out = np.empty((len(boxes), MOUTH_SIZE[1], MOUTH_SIZE[0]), np.float32)
    height, width = gray.shape[1:]
    for t, box in enumerate(boxes):
        x1, y1, x2, y2 = mouth_region(box)
        # warpAffine samples the sub-pixel rectangle directly (no rounding jitter), padding outside the frame.
        sx, sy = (x2 - x1) / MOUTH_SIZE[0], (y2 - y1) / MOUTH_SIZE[1]
        m = np.array([[1 / sx, 0, -x1 / sx], [0, 1 / sy, -y1 / sy]], np.float32)
        out[t] = cv2.warpAffine(gray[start + t], m, MOUTH_SIZE, flags=cv2.INTER_AREA,
                                borderMode=cv2.BORDER_REPLICATE)
    return out


def motion_energy(patches: np.ndarray) -> np.ndarray:
    """Mean absolute change of the mouth patch from one frame to the next, (T,); frame 0 copies frame 1.

    Each patch is normalised to zero mean first, so lighting changes and small head shifts count less
    than the mouth opening and closing.
    """
    if len(patches) < 2:
        return np.zeros(len(patches), np.float32)
    p = patches - patches.mean(axis=(1, 2), keepdims=True)
    energy = np.abs(np.diff(p, axis=0)).mean(axis=(1, 2))
    return np.concatenate([energy[:1], energy]).astype(np.float32)


def streamed_motion_energy(runs: Iterable[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """motion_energy(mouth_patches(...)) of a whole track, fed as consecutive runs of (gray frames, boxes).

    Equal, value for value, to the all-at-once result: each run is prefixed with the previous run's last
    patch, so every frame-to-frame difference is computed exactly once, from the same two patches.
    Memory: one run of frames and patches, whatever the track's length.
    """
    parts: list[np.ndarray] = []
    previous = None
    for frames, boxes in runs:
        patches = mouth_patches(frames, boxes, 0)
        if previous is None:
            parts.append(motion_energy(patches))
        else:
            parts.append(motion_energy(np.concatenate([previous, patches]))[1:])
        previous = patches[-1:]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def audio_envelope(audio: np.ndarray, samples_per_frame: int = SAMPLES_PER_FRAME) -> np.ndarray:
    """Per video frame log RMS energy of the audio (n_frames,)."""
    n = len(audio) // samples_per_frame
    frames = audio[: n * samples_per_frame].reshape(n, samples_per_frame).astype(np.float64)
    return np.log(np.sqrt((frames ** 2).mean(axis=1)) + 1e-4).astype(np.float32)


def wav_envelope(wav_path: Path, samples_per_frame: int = SAMPLES_PER_FRAME, chunk_frames: int = 1500) -> np.ndarray:
    """audio_envelope(read_audio(wav_path)), reading the file a minute at a time instead of all at once."""
    parts = []
    for pcm in Pcm16(wav_path).chunks(chunk_frames * samples_per_frame):
        if len(pcm) < samples_per_frame:  # what is left is less than a frame: dropped, as audio_envelope does
            break
        parts.append(audio_envelope(pcm.astype(np.float32) / 32768.0, samples_per_frame))
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)
