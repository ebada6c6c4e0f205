"""A contact sheet of one demo clip: per row the real video and each fake, a full frame then mouth close-ups
at evenly spaced times, so the artifacts can be judged by eye."""
from __future__ import annotations

import cv2
import numpy as np


def contact_sheet(videos: dict[str, np.ndarray], mouth: np.ndarray, mouth_width: float, columns: int = 6,
                  tile: int = 128) -> np.ndarray:
    """uint8 RGB image: rows in the order of `videos` ({method: (T, H, W, 3)}), labelled on the left."""
    times = np.linspace(0, len(mouth) - 1, columns + 2).round().astype(int)[1:-1]
    rows = []
    for method, frames in videos.items():
        cells = [cv2.resize(frames[times[len(times) // 2]], (tile, tile), interpolation=cv2.INTER_AREA)]
        for t in times:
            half = int(round(mouth_width))
            cx, cy = np.round(mouth[t]).astype(int)
            padded = cv2.copyMakeBorder(frames[t], half, half, half, half, cv2.BORDER_CONSTANT)
            crop = padded[cy:cy + 2 * half, cx:cx + 2 * half]
            cells.append(cv2.resize(crop, (tile, tile), interpolation=cv2.INTER_NEAREST))
        label = np.full((tile, 2 * tile // 2 + 40, 3), 255, np.uint8)
        cv2.putText(label, method, (4, tile // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(np.concatenate([label, *cells], axis=1))
    return np.concatenate(rows, axis=0)
