"""Render 96x96 mouth crops straight from the full 25 fps frames of a video, in one decode.

The align stage stores, per kept frame, the frame -> crop similarity transform (no pixels); this module
turns those into crops. An optional `frame_transform(frames, first_frame_index)` is applied to every decoded
batch of full RGB frames before the warp (the robustness evaluation's corruptions go there); None is the
same code path as a transform returning its input. Grayscale comes from OpenCV's fixed-point RGB -> gray
(BT.601 weights) on the full frame, then the warp: deterministic, byte for byte, on every machine.
Memory is bounded by one decode batch of full frames plus the crops asked for.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from preprocess.contract import CROP_SIZE
from preprocess.media import iter_frame_batches

FrameTransform = Callable[[np.ndarray, int], np.ndarray]
BATCH = 16  # decoded frames held at a time: 100 MB of 1080p RGB


def _identity(frames: np.ndarray, first: int) -> np.ndarray:
    return frames


def warp_mouth(frame: np.ndarray, crop_transform: np.ndarray) -> np.ndarray:
    """One frame (H, W[, 3]) uint8 -> its (96, 96[, 3]) mouth crop under a frame -> crop 2x3 transform."""
    return cv2.warpAffine(frame, np.asarray(crop_transform, np.float64), (CROP_SIZE, CROP_SIZE),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _checked(frames, crop_transforms) -> tuple[np.ndarray, np.ndarray]:
    frames = np.asarray(frames, np.int64).reshape(-1)
    crop_transforms = np.asarray(crop_transforms, np.float64)
    if crop_transforms.shape != (len(frames), 2, 3):
        raise ValueError(f"crop transforms of shape {crop_transforms.shape} for {len(frames)} frames "
                         "(want (T, 2, 3))")
    return frames, crop_transforms


def iter_mouths(video: Path, frames: np.ndarray, crop_transforms: np.ndarray, color: bool,
                frame_transform: FrameTransform | None = None, batch: int = BATCH
                ) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (position in `frames` of the first crop, crops (n, 96, 96[, 3]) uint8), in order, one decode batch
    at a time. `frames` (T,) must be non-decreasing frame indices, `crop_transforms` (T, 2, 3) frame -> crop.

    Every decoded frame up to the last one listed goes through `frame_transform` (in order, in batches, with
    the index of the batch's first frame), whether listed or not: a transform sees a gap-free video.
    Raises ValueError (plain words) when the video has fewer frames than listed or a transform misbehaves.
    """
    frames, crop_transforms = _checked(frames, crop_transforms)
    if len(frames) and (frames[0] < 0 or np.any(np.diff(frames) < 0)):
        raise ValueError("frame indices must be non-negative and sorted")
    if not len(frames):
        return
    transform = frame_transform or _identity
    pos, first = 0, 0
    for rgb in iter_frame_batches(video, batch=max(1, int(batch)), gray=False):
        last = first + len(rgb)
        hi = pos + int(np.searchsorted(frames[pos:], last, side="left"))
        shape = rgb.shape
        rgb = transform(rgb, first)
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.shape != shape:
            raise ValueError(f"the frame transform returned {getattr(rgb, 'dtype', type(rgb).__name__)}"
                             f"{getattr(rgb, 'shape', '')} for uint8 frames {shape}: it must keep both")
        if hi > pos:
            out = np.empty((hi - pos, CROP_SIZE, CROP_SIZE, *((3,) if color else ())), np.uint8)
            for i in range(pos, hi):
                frame = rgb[frames[i] - first]
                if not color:
                    frame = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
                out[i - pos] = warp_mouth(frame, crop_transforms[i])
            yield pos, out
            pos = hi
        first = last
        if pos >= len(frames):
            return
    raise ValueError(f"frames up to {int(frames[-1])} are listed but the video has only {first} frames")


def render_mouths(video: Path, frames: np.ndarray, crop_transforms: np.ndarray, color: bool,
                  frame_transform: FrameTransform | None = None) -> np.ndarray:
    """The mouth crops (T, 96, 96[, 3]) uint8 of the listed frames (indices into the 25 fps video, normally
    sorted; any order is rendered in one decode too), each warped with its frame -> crop transform (T, 2, 3);
    see iter_mouths for `frame_transform`."""
    frames, crop_transforms = _checked(frames, crop_transforms)
    order = np.argsort(frames, kind="stable")
    out = np.empty((len(frames), CROP_SIZE, CROP_SIZE, *((3,) if color else ())), np.uint8)
    filled = 0
    for pos, crops in iter_mouths(video, frames[order], crop_transforms[order], color, frame_transform):
        out[order[pos:pos + len(crops)]] = crops
        filled = pos + len(crops)
    if filled != len(out):  # iter_mouths raises first; a guard against silently uninitialised rows
        raise ValueError(f"rendered {filled} of {len(out)} crops")
    return out
