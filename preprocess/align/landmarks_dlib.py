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

    def __init__(self, refine: bool = True):
        import dlib

        self._dlib = dlib
        self._predictor = dlib.shape_predictor(str(model_path()))
        self.refine = refine
        self.chained = refine  # predict takes each frame's predecessor in its track (frames one at a time, in order)
        self.passes = 0  # predictor runs so far (a chained frame costs one, a restarted one two or three)

    def region(self, box) -> tuple[int, int, int, int]:
        """The frame pixels prediction on `box` reads: the box and half its size around it (the model's pixel
        features lie inside the face's shape; a box refined from a pass on `box` stays within the landmarks'
        extent). A chained frame starts from another box (chained_box): its region is the union of both."""
        x1, y1, x2, y2 = (float(v) for v in box)
        mx, my = 0.5 * max(x2 - x1, 1.0), 0.5 * max(y2 - y1, 1.0)
        return int(np.floor(x1 - mx)), int(np.floor(y1 - my)), int(np.ceil(x2 + mx)) + 1, int(np.ceil(y2 + my)) + 1

    @staticmethod
    def chained_box(previous: np.ndarray, previous_box: np.ndarray, box: np.ndarray) -> np.ndarray:
        """Where a chained frame starts: the box rebuilt from the landmarks of the frame before, moved as the
        tracker's box moved from that frame (`previous_box`) to this one (`box`)."""
        return refined_box(previous) + np.tile(_centre(box) - _centre(previous_box), 2)

    def _predict_one(self, frame: np.ndarray, box) -> np.ndarray:
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        shape = self._predictor(frame, self._dlib.rectangle(x1, y1, x2, y2))
        self.passes += 1
        return np.array([(p.x, p.y) for p in shape.parts()], np.float32)

    def predict(self, frames, boxes: np.ndarray, previous: np.ndarray | None = None,
                previous_boxes: np.ndarray | None = None) -> tuple[np.ndarray, None]:
        """frames: B uint8 grayscale (H, W) images (or RGB (H, W, 3); sizes may differ), boxes (B, 4) x1 y1 x2 y2.

        Returns landmarks (B, 68, 2) float32 in frame pixels, and None (dlib gives no per-point scores).
        With `refine`, each frame is predicted on a dlib-style box (refined_box) rather than the tracker's:
        - chained: where `previous` (B, 68, 2; NaN rows: none) gives the landmarks of the frame before it in
          its track, the box rebuilt from those, moved as the tracker's box moved since (`previous_boxes`):
          one pass. Between the tracker's detections its boxes are interpolated; the landmarks of the frame
          before follow the face itself;
        - otherwise (a track's first frame, after a failed one, where the chained box strays from the tracker's,
          or where the chained pass did not converge: its landmarks' own box is not the box it started from,
          as when a start a few pixels off squashes the shape): the box rebuilt from a first pass on the
          tracker's box, then a second pass.
        """
        boxes = np.asarray(boxes, np.float64)
        previous_boxes = boxes if previous_boxes is None else previous_boxes
        out = np.empty((len(frames), 68, 2), np.float32)
        for i, (frame, box) in enumerate(zip(frames, boxes)):
            frame = np.ascontiguousarray(frame)
            if not self.refine:
                out[i] = self._predict_one(frame, box)
                continue
            if previous is not None and np.isfinite(previous[i]).all():
                start = self.chained_box(previous[i], previous_boxes[i], box)
                if _agrees(start, box):
                    points = self._predict_one(frame, start)
                    if _converged(start, points):
                        out[i] = points
                        continue
            out[i] = self._predict_one(frame, refined_box(self._predict_one(frame, box)))
        return out, None


def refined_box(points: np.ndarray) -> np.ndarray:
    """The box dlib's detector would give a face with these 68 landmarks (x1 y1 x2 y2, _REFINE)."""
    lo, hi = points.min(0).astype(np.float64), points.max(0).astype(np.float64)
    size = np.maximum(hi - lo, 1.0)
    return np.concatenate([lo, hi]) + _REFINE * np.concatenate([size, size])


def _centre(box: np.ndarray) -> np.ndarray:
    return 0.5 * (np.asarray(box[:2], np.float64) + np.asarray(box[2:], np.float64))


def _converged(start: np.ndarray, points: np.ndarray, tolerance: float = 0.08) -> bool:
    """Whether landmarks predicted from box `start` rebuild that box: each side within `tolerance` of its size
    (dlib's pass is a fixed point on a box of its own convention; a squashed or shifted shape is not)."""
    size = np.tile(np.maximum(start[2:] - start[:2], 1.0), 2)
    return bool(np.all(np.abs(refined_box(points) - start) <= tolerance * size))


def _agrees(box: np.ndarray, tracked: np.ndarray) -> bool:
    """Whether a chained box still describes the tracker's face: centres within half the tracked box's size,
    sizes within a factor of 2 (a chain that drifted off the face, or onto another, is restarted)."""
    size = np.sqrt(max(box[2] - box[0], 1.0) * max(box[3] - box[1], 1.0))
    tracked_size = np.sqrt(max(tracked[2] - tracked[0], 1.0) * max(tracked[3] - tracked[1], 1.0))
    return bool(np.linalg.norm(_centre(box) - _centre(tracked)) <= 0.5 * tracked_size
                and 0.5 <= size / tracked_size <= 2.0)
