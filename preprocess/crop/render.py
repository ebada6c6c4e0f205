"""Render 96x96 mouth crops straight from the full 25 fps frames of a video, in one decode.

The align stage stores, per kept frame, the frame -> crop similarity transform (no pixels); this module
turns those into crops. Only the pixels a crop's warp reads are converted to RGB (media.frame_region: at 720p
the whole-frame conversion cost 3x the warps), then OpenCV's fixed-point RGB -> gray (BT.601 weights) and the
warp: deterministic, byte for byte the crops of whole-frame conversion, on every machine.
An optional `frame_transform(frames, first_frame_index)` is applied to every decoded batch of full RGB frames
before the warp (the robustness evaluation's corruptions, which need whole frames, go there); an identity
transform gives the same crops. Memory is bounded by one decode batch of frames plus the crops asked for.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from preprocess.contract import CROP_SIZE
from preprocess.media import frame_region, iter_frame_batches, iter_video_frames

FrameTransform = Callable[[np.ndarray, int], np.ndarray]
BATCH = 16  # decoded frames held at a time: 100 MB of 1080p RGB


def warp_mouth(frame: np.ndarray, crop_transform: np.ndarray) -> np.ndarray:
    """One frame (H, W[, 3]) uint8 -> its (96, 96[, 3]) mouth crop under a frame -> crop 2x3 transform."""
    return cv2.warpAffine(frame, np.asarray(crop_transform, np.float64), (CROP_SIZE, CROP_SIZE),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def source_region(crop_transform: np.ndarray, margin: int = 2) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the frame pixels the warp of one crop reads, its corners mapped back to the frame
    plus `margin` for the bilinear neighbours (not clipped to the frame)."""
    inverse = cv2.invertAffineTransform(np.asarray(crop_transform, np.float64))
    corners = np.array([[0, 0], [CROP_SIZE - 1, 0], [0, CROP_SIZE - 1], [CROP_SIZE - 1, CROP_SIZE - 1]], float)
    points = corners @ inverse[:, :2].T + inverse[:, 2]
    lo, hi = np.floor(points.min(0)) - margin, np.ceil(points.max(0)) + margin + 1
    return int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1])


def mouth_from_region(frame, crop_transform: np.ndarray, color: bool) -> np.ndarray:
    """The crop of one decoded frame, converting only the region its warp reads. Where that region leaves the
    frame it is clipped to the frame's edge, so the border replication sees the same edge pixels."""
    rgb, x0, y0 = frame_region(frame, source_region(crop_transform), "rgb24")
    shifted = np.array(crop_transform, np.float64)
    shifted[:, 2] += shifted[:, :2] @ (x0, y0)  # region pixel (u, v) is frame pixel (u + x0, v + y0)
    return warp_mouth(rgb if color else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), shifted)


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
    if frame_transform is None:
        yield from _mouths_by_region(video, frames, crop_transforms, color, max(1, int(batch)))
    else:
        yield from _mouths_of_whole_frames(video, frames, crop_transforms, color, frame_transform,
                                           max(1, int(batch)))


def _mouths_by_region(video, frames, crop_transforms, color, batch):
    pos, start, crops, decoded = 0, 0, [], 0
    for decoded, frame in enumerate(iter_video_frames(video), start=1):
        while pos < len(frames) and frames[pos] == decoded - 1:
            crops.append(mouth_from_region(frame, crop_transforms[pos], color))
            pos += 1
        if crops and (decoded % batch == 0 or pos == len(frames)):  # per decode batch, as whole frames
            yield start, np.stack(crops)
            start, crops = pos, []
        if pos == len(frames):
            return
    raise ValueError(f"frames up to {int(frames[-1])} are listed but the video has only {decoded} frames")


def _mouths_of_whole_frames(video, frames, crop_transforms, color, transform, batch):
    pos, first = 0, 0
    for rgb in iter_frame_batches(video, batch=batch, gray=False):
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
