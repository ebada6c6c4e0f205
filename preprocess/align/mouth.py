"""The 96x96 mouth crop: centred on the mean of points 48-67 in the aligned (canonical) face."""
from __future__ import annotations

import cv2
import numpy as np

from preprocess.align import geometry
from preprocess.contract import CROP_SIZE

HALF = (CROP_SIZE - 1) / 2  # 47.5: the crop centre in pixel-centre coordinates


def crop_transforms(to_canonical: np.ndarray, smoothed: np.ndarray) -> np.ndarray:
    """Per frame: frame -> crop transforms (T, 2, 3).

    The centre is the mean of the smoothed mouth points mapped into the canonical face, moved just
    enough to keep the crop inside the 256x256 canvas.
    """
    mouth = geometry.apply(to_canonical, smoothed[:, geometry.MOUTH_POINTS])  # (T, 20, 2)
    centres = np.clip(mouth.mean(1), HALF, geometry.CANVAS - 1 - HALF)
    crops = to_canonical.copy()
    crops[:, :, 2] += HALF - centres
    return crops


def aligned_face(frame: np.ndarray, to_canonical: np.ndarray) -> np.ndarray:
    """The whole 256x256 canonical face of one frame (for inspection)."""
    return cv2.warpAffine(frame, to_canonical, (geometry.CANVAS, geometry.CANVAS), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT)


def qc(landmarks_crop: np.ndarray) -> dict:
    """Lip-centring figures of one piece: offset of the mouth centre from the crop centre, mouth width."""
    offset = np.linalg.norm(landmarks_crop[:, geometry.MOUTH_POINTS].mean(1) - HALF, axis=-1)
    width = np.linalg.norm(landmarks_crop[:, 54] - landmarks_crop[:, 48], axis=-1)
    return {"mouth_offset_mean": round(float(offset.mean()), 3), "mouth_offset_max": round(float(offset.max()), 3),
            "mouth_width_median": round(float(np.median(width)), 3)}
