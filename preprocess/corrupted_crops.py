"""Mouth crops of a video with a corruption applied to its full frames (the robustness stage, `pipeline predict
--corrupt`, `pipeline shards inspect --corrupt`).

The paper's protocol (DeeperForensics' perturbations, Figure 4): the corruption degrades the frames the detector
sees, not the face geometry. So the landmarks, and the frame -> crop transforms estimated from them, are those
of the CLEAN frames (the align stage's), never recomputed on corrupted ones; the corruption is applied to the
full frames and the same transforms warp the mouths out of them. Level 0 is the clean render itself.
Block-wise, blur and resize corrupt each decoded batch (preprocess.corrupt.apply with the batch's first frame
index, so blocks do not depend on batching); compression re-encodes the whole resampled file with x264 into a
temporary file and renders from that (DeeperForensics compresses the file, not single frames).
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from preprocess import corrupt
from preprocess.contract import CROP_SIZE
from preprocess.corrupt import Corruption, RobustnessParams

# The shard reader's grey (preprocess.shardformat.decode_sample): the detector sees colour crops this way.
GRAY_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)


def crop_transforms(arrays: dict) -> np.ndarray:
    """Per row of an align .npz: the frame -> 96x96 mouth crop transform (T, 2, 3).

    The one place that knows the align output's layout: files that store `crop_transforms` give them as they
    are; older ones store frame -> canonical `transforms` and the crop centres in the canonical face, and the
    crop is that transform moved so the centre lands on the crop's centre pixel (preprocess/align/mouth.py)."""
    if "crop_transforms" in arrays:
        return np.asarray(arrays["crop_transforms"], np.float64)
    half = (CROP_SIZE - 1) / 2
    out = np.array(arrays["transforms"], np.float64, copy=True)
    out[:, :, 2] += half - np.asarray(arrays["crop_centres"], np.float64)
    return out


ALIGN_KEYS = ("piece", "frame", "transforms", "crop_centres")  # what crop_transforms needs from an older file


def align_keys(npz_files: list[str]) -> tuple[str, ...]:
    """The .npz entries to load for crop_transforms (the newer layout has them stored directly)."""
    return ("piece", "frame", "crop_transforms") if "crop_transforms.npy" in npz_files or \
        "crop_transforms" in npz_files else ALIGN_KEYS


def load_geometry(npz: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """(piece (T,), frame (T,), frame -> crop transforms (T, 2, 3), colour) of one align .npz."""
    with np.load(npz, allow_pickle=False) as data:
        keys = align_keys(data.files)
        arrays = {k: data[k] for k in keys}
        meta = json.loads(str(data["meta"]))
    return arrays["piece"], arrays["frame"], crop_transforms(arrays), bool(meta.get("color", False))


def render(video: Path, frames: np.ndarray, transforms: np.ndarray, color: bool, corruption: Corruption,
           params: RobustnessParams, video_id: str, workdir: Path | None = None) -> np.ndarray:
    """The mouth crops (T, 96, 96[, 3]) uint8 of `frames` (any order) of the resampled `video` with `corruption`
    on its full frames; level 0 is exactly the clean render. `video_id` seeds the block positions
    (corrupt.video_seed)."""
    frames = np.asarray(frames, np.int64)
    order = np.argsort(frames, kind="stable")  # the renderer walks the video once, in frame order
    crops = _render_sorted(video, frames[order], np.asarray(transforms)[order], color, corruption, params,
                           video_id, workdir)
    out = np.empty_like(crops)
    out[order] = crops
    return out


def _render_sorted(video: Path, frames: np.ndarray, transforms: np.ndarray, color: bool, corruption: Corruption,
                   params: RobustnessParams, video_id: str, workdir: Path | None) -> np.ndarray:
    from preprocess.crop.render import render_mouths

    if corruption.level == 0:
        return render_mouths(video, frames, transforms, color)
    if corruption.type == "compression":
        crf = params.levels.parameter(corruption)
        with tempfile.TemporaryDirectory(prefix="avlips-robust-", dir=workdir) as tmp:
            encoded = Path(tmp) / "compressed.mkv"
            corrupt.compress_file(video, encoded, crf, params.compression_preset)
            return render_mouths(encoded, frames, transforms, color)
    seed = corrupt.video_seed(params.seed, video_id)

    def on_frames(batch: np.ndarray, first: int) -> np.ndarray:
        return corrupt.apply(batch, corruption, seed, params.levels, params.compression_preset, start=first)

    return render_mouths(video, frames, transforms, color, frame_transform=on_frames)


def gray(crops: np.ndarray) -> np.ndarray:
    """Colour crops as the detector reads them from shards (grayscale crops pass through)."""
    if crops.ndim == 3:
        return crops
    return (crops.astype(np.float32) @ GRAY_WEIGHTS).round().astype(np.uint8)
