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

import tempfile
from pathlib import Path

import numpy as np

from preprocess import corrupt
from preprocess.align.align_video import load_aligned
from preprocess.corrupt import Corruption, RobustnessParams


def load_geometry(npz: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """(piece (T,), frame (T,), frame -> crop transforms (T, 2, 3), colour) of one align .npz."""
    arrays, meta = load_aligned(npz, keys=("piece", "frame", "crop_transforms"))
    return arrays["piece"], arrays["frame"], arrays["crop_transforms"], bool(meta.get("color", False))


def render(video: Path, frames: np.ndarray, transforms: np.ndarray, color: bool, corruption: Corruption,
           params: RobustnessParams, video_id: str, workdir: Path | None = None) -> np.ndarray:
    """The mouth crops (T, 96, 96[, 3]) uint8 of `frames` of the resampled `video` with `corruption` on its full
    frames; level 0 is exactly the clean render. `video_id` seeds the block positions (corrupt.video_seed)."""
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
        return corrupt.apply(batch, corruption, seed, params.levels, start=first)

    return render_mouths(video, frames, transforms, color, frame_transform=on_frames)
