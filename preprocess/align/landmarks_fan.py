"""FAN (face-alignment's 2DFAN4, the paper's landmark model): batched, on the GPU when there is one.

Runs on the tracked boxes with face-alignment's own crop rule (centre moved up 0.12 box heights, side
200 * (w + h) / reference_scale px, resized to 256x256), so the landmarks match what
`FaceAlignment.get_landmarks_from_image(..., detected_faces=boxes)` would give, without its per-face loop.
Per-point scores are the heatmap peaks.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

CROP = 256
HEATMAP = 64
CENTER_Y_OFFSET = 0.12
SCALE_FACTOR = 200.0


def default_device() -> str:
    import torch

    return os.environ.get("AVLIPS_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")


def crop_transform(box: np.ndarray, reference_scale: float) -> tuple[np.ndarray, float, np.ndarray]:
    """Frame -> 256x256 FAN crop transform (pixel centres), plus the crop's side in frame px and centre."""
    x1, y1, x2, y2 = (float(v) for v in box)
    centre = np.array([(x1 + x2) / 2, (y1 + y2) / 2 - (y2 - y1) * CENTER_Y_OFFSET])
    side = SCALE_FACTOR * (x2 - x1 + y2 - y1) / reference_scale
    k = CROP / side
    m = np.array([[k, 0.0, CROP / 2 - 0.5 - k * centre[0]], [0.0, k, CROP / 2 - 0.5 - k * centre[1]]])
    return m, side, centre


def heatmap_peaks(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, 68, 64, 64) -> peak positions (B, 68, 2) in heatmap cells (centre of cell j is j + 0.5, with
    face-alignment's quarter-cell step towards the higher neighbour) and peak values (B, 68)."""
    b, c, h, w = heatmaps.shape
    flat = heatmaps.reshape(b, c, h * w)
    idx = flat.argmax(-1)
    scores = np.take_along_axis(flat, idx[..., None], -1)[..., 0]
    px, py = idx % w, idx // w
    inner = (px > 0) & (px < w - 1) & (py > 0) & (py < h - 1)
    cx, cy = np.clip(px, 1, w - 2), np.clip(py, 1, h - 2)
    bi, ci = np.meshgrid(np.arange(b), np.arange(c), indexing="ij")
    dx = heatmaps[bi, ci, cy, cx + 1] - heatmaps[bi, ci, cy, cx - 1]
    dy = heatmaps[bi, ci, cy + 1, cx] - heatmaps[bi, ci, cy - 1, cx]
    pts = np.stack([px, py], -1).astype(np.float64) + 0.5
    pts += np.where(inner[..., None], np.sign(np.stack([dx, dy], -1)) * 0.25, 0.0)
    return pts, scores


class FanLandmarker:
    name = "fan"
    wants_rgb = True

    def __init__(self, weights: Path | None, reference_scale: float = 165.0, batch_size: int = 32,
                 device: str | None = None, random_weights: bool = False):
        """`random_weights` builds an untrained network (shape tests only: there are no weights offline)."""
        import torch
        from face_alignment.models import FAN

        self.torch = torch
        self.device = device or default_device()
        self.reference_scale = reference_scale
        self.batch_size = batch_size
        net = FAN(4)
        if not random_weights:
            if weights is None:
                raise FileNotFoundError("FAN landmark weights are needed (see preprocess.weights.resolve_weights)")
            net.load_state_dict(torch.load(str(weights), map_location="cpu", weights_only=True))
        self.net = net.to(self.device).eval()

    def region(self, box) -> tuple[int, int, int, int]:
        """The frame pixels the 256x256 crop of `box` reads (its square, plus the bilinear neighbours)."""
        _, side, centre = crop_transform(np.asarray(box, np.float64), self.reference_scale)
        lo, hi = np.floor(centre - side / 2) - 2, np.ceil(centre + side / 2) + 3
        return int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1])

    def predict(self, frames, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """frames: B RGB uint8 images (H, W, 3) (sizes may differ), boxes (B, 4). Returns landmarks (B, 68, 2) float32 in frame
        pixels and per-point scores (B, 68) float32 (heatmap peaks)."""
        torch = self.torch
        pts_all, scores_all = [], []
        for start in range(0, len(frames), self.batch_size):
            chunk_f, chunk_b = frames[start:start + self.batch_size], boxes[start:start + self.batch_size]
            crops, geo = [], []
            for frame, box in zip(chunk_f, chunk_b):
                m, side, centre = crop_transform(box, self.reference_scale)
                crops.append(cv2.warpAffine(frame, m, (CROP, CROP), flags=cv2.INTER_LINEAR,
                                            borderMode=cv2.BORDER_CONSTANT))
                geo.append((side, centre))
            batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div_(255.0)
            with torch.inference_mode():
                out = self.net(batch.to(self.device))
                out = out[-1] if isinstance(out, (list, tuple)) else out
                heat = out.float().cpu().numpy()
            cells, scores = heatmap_peaks(heat)
            side = np.array([g[0] for g in geo])[:, None, None]
            centre = np.stack([g[1] for g in geo])[:, None, :]
            pts_all.append((cells * side / HEATMAP - side / 2 + centre).astype(np.float32))
            scores_all.append(scores.astype(np.float32))
        if not pts_all:
            return np.zeros((0, 68, 2), np.float32), np.zeros((0, 68), np.float32)
        return np.concatenate(pts_all), np.concatenate(scores_all)
