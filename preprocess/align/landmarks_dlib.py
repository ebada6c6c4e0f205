"""dlib's 68-point shape predictor (iBUG 300-W numbering, as FAN): offline, CPU, on the tracked boxes.

The model file comes with the `face-recognition-models` wheel; it is located with importlib without
importing that package (its __init__ imports pkg_resources, which current setuptools no longer ships).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

MODEL_FILE = "shape_predictor_68_face_landmarks.dat"
# dlib's predictor was trained on its HOG detector's boxes; on the test clips that box relates to the
# extent of the 68 points (w, h) as below (measured mean over 743 frames). Rebuilding it from a first
# pass makes the result independent of the tracker's box convention (RetinaFace boxes are looser).
_REFINE = np.array([-0.058, -0.114, 0.075, -0.033])


def model_path() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("dlib landmark model not found: pip install face-recognition-models "
                                f"(it ships models/{MODEL_FILE})")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "models" / MODEL_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(f"{MODEL_FILE} missing from the face-recognition-models package")


class DlibLandmarker:
    name = "dlib"
    wants_rgb = False  # runs on grayscale frames
    CALIBRATION = 4  # frames per batch predicted twice to learn the tracker-box -> dlib-box relation

    def __init__(self, refine: bool = True):
        import dlib

        self._dlib = dlib
        self._predictor = dlib.shape_predictor(str(model_path()))
        self.refine = refine

    def region(self, box) -> tuple[int, int, int, int]:
        """The frame pixels prediction on `box` reads: the box and half its size around it (the model's pixel
        features lie inside the face's shape; the refined box stays within the landmarks' extent)."""
        x1, y1, x2, y2 = (float(v) for v in box)
        mx, my = 0.5 * max(x2 - x1, 1.0), 0.5 * max(y2 - y1, 1.0)
        return int(np.floor(x1 - mx)), int(np.floor(y1 - my)), int(np.ceil(x2 + mx)) + 1, int(np.ceil(y2 + my)) + 1

    def _predict_one(self, frame: np.ndarray, box) -> np.ndarray:
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        shape = self._predictor(frame, self._dlib.rectangle(x1, y1, x2, y2))
        return np.array([(p.x, p.y) for p in shape.parts()], np.float32)

    def _refined_box(self, pts: np.ndarray) -> np.ndarray:
        lo, hi = pts.min(0), pts.max(0)
        size = np.maximum(hi - lo, 1.0)
        return np.concatenate([lo, hi]) + _REFINE * np.concatenate([size, size])

    def predict(self, frames: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, None]:
        """frames: B uint8 grayscale (H, W) images (or RGB (H, W, 3); sizes may differ), boxes (B, 4) x1 y1 x2 y2.

        Returns landmarks (B, 68, 2) float32 in frame pixels, and None (dlib gives no per-point scores).
        With `refine`, the first CALIBRATION frames of the batch are predicted twice (tracked box, then the
        dlib-style box rebuilt from the first landmarks); the median relation between the two boxes then
        converts the remaining tracked boxes, so they need one pass each (about 1.1 passes a frame).
        """
        boxes = np.asarray(boxes, np.float64)
        out = np.empty((len(frames), 68, 2), np.float32)
        if not self.refine:
            for i, (frame, box) in enumerate(zip(frames, boxes)):
                out[i] = self._predict_one(np.ascontiguousarray(frame), box)
            return out, None
        calib = min(len(frames), self.CALIBRATION)
        rel = []
        for i in range(calib):
            frame = np.ascontiguousarray(frames[i])
            refined = self._refined_box(self._predict_one(frame, boxes[i]))
            out[i] = self._predict_one(frame, refined)
            rel.append(_relation(boxes[i], refined))
        if calib < len(frames):
            relation = np.median(np.array(rel), axis=0)
            for i in range(calib, len(frames)):
                out[i] = self._predict_one(np.ascontiguousarray(frames[i]), _apply_relation(boxes[i], relation))
        return out, None


def _relation(box: np.ndarray, refined: np.ndarray) -> np.ndarray:
    """The refined box relative to the tracked one: corner offsets in units of its width / height."""
    w, h = max(box[2] - box[0], 1.0), max(box[3] - box[1], 1.0)
    return (refined - box) / np.array([w, h, w, h])


def _apply_relation(box: np.ndarray, relation: np.ndarray) -> np.ndarray:
    w, h = max(box[2] - box[0], 1.0), max(box[3] - box[1], 1.0)
    return box + relation * np.array([w, h, w, h])
