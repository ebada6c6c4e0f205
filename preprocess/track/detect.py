"""Face detection for the track stage: batched RetinaFace (MobileNet-0.25, through face-alignment's detector
class; the paper's) or dlib's HOG frontal face detector (weights inside the dlib wheel: offline, CPU).
Both return per frame an (n, 5) array x1, y1, x2, y2, score in the pixels of the frames they are given.

face-alignment's `detect_from_batch` loops over images one by one; here the same network and box decoding run
on a whole batch at once. Frames may be detected at a reduced size (`short_side`) and boxes mapped back, which is
most of the speed-up on CPU; the benchmark measures what it costs in box accuracy.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

# RetinaFace was trained on BGR images minus these channel means (biubug6/Pytorch_Retinaface).
BGR_MEAN = (104.0, 117.0, 123.0)


DETECTORS = ("dlib", "retinaface")


@dataclass(frozen=True)
class DetectorParams:
    confidence: float = 0.5  # RetinaFace score threshold (DESIGN: about 0.5)
    nms: float = 0.4  # IoU threshold of non-maximum suppression (DESIGN: 0.4)
    dlib_threshold: float = 0.0  # dlib HOG: SVM score above which a window is a face (dlib's own default 0)
    dlib_upsample: int = 0  # dlib HOG: upsample the frame this many times (x2 each) to find faces < 80 px


def pick_device() -> str:
    import torch  # here and below, not at the top: dlib's path and the stages' imports never load torch (3 s)

    return "cuda" if torch.cuda.is_available() else "cpu"


class RetinaFaceBatch:
    """RetinaFace on batches of RGB frames; returns per frame an (n, 5) array x1, y1, x2, y2, score."""

    wants_rgb = True

    def __init__(self, weights: Path, params: DetectorParams = DetectorParams(), device: str | None = None):
        import torch
        from face_alignment.detection.retinaface.retinaface_detector import RetinaFaceDetector

        self.device = device or pick_device()
        self.params = params
        detector = RetinaFaceDetector(self.device, path_to_detector=str(weights),
                                      confidence_threshold=params.confidence, nms_threshold=params.nms)
        self.net = detector.face_detector
        self.cfg = detector.cfg
        self.mean = torch.tensor(BGR_MEAN, device=self.device).view(1, 3, 1, 1)
        self._prior_cache: dict[tuple[int, int], "torch.Tensor"] = {}  # per frame size (a video has one)

    def _priors(self, height: int, width: int) -> "torch.Tensor":
        # a cache of this detector's own (functools.lru_cache on the method would keep every detector alive)
        if (height, width) not in self._prior_cache:
            from face_alignment.detection.retinaface.prior_box import PriorBox

            self._prior_cache[height, width] = PriorBox(self.cfg, image_size=(height, width)).forward().to(self.device)
        return self._prior_cache[height, width]

    def __call__(self, frames: np.ndarray) -> list[np.ndarray]:
        """`frames`: uint8 (B, H, W, 3) RGB. Boxes are in the pixels of these frames."""
        import torch

        if len(frames) == 0:
            return []
        with torch.inference_mode():
            return self._detect(frames)

    def _detect(self, frames: np.ndarray) -> list[np.ndarray]:
        import torch

        _, height, width, _ = frames.shape
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
        x = x.permute(0, 3, 1, 2).flip(1).float() - self.mean  # RGB -> BGR, minus means
        loc, conf, _ = self.net(x)
        priors = self._priors(height, width)
        var0, var1 = self.cfg["variance"]
        centre = priors[None, :, :2] + loc[..., :2] * var0 * priors[None, :, 2:]
        size = priors[None, :, 2:] * torch.exp(loc[..., 2:] * var1)
        boxes = torch.cat([centre - size / 2, centre + size / 2], dim=-1)
        boxes = boxes * torch.tensor([width, height, width, height], device=self.device, dtype=boxes.dtype)
        scores = conf[..., 1]
        dets = torch.cat([boxes, scores[..., None]], dim=-1).float().cpu().numpy()
        keep = (scores > self.params.confidence).cpu().numpy()
        return [_nms(d[k], self.params.nms) for d, k in zip(dets, keep)]


def frontal_face_detector(cache: Path | None = None):
    """dlib.get_frontal_face_detector(), from its saved form when there is one. Building it takes 0.34 s of
    every track stage command, loading the saved detector 1 ms; the saved file (150 kB, per dlib version, in
    `cache`, default $XDG_CACHE_HOME/avlips or ~/.cache/avlips) is the same detector, box for box and score
    for score. Its name carries the sha256 of its bytes, checked on loading: a changed file is not used. Written
    on first use; an unreadable, unwritable or damaged cache only costs the build."""
    import dlib

    prefix = f"dlib-{dlib.__version__}-frontal-face"
    try:
        folder = cache or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "avlips"
        for saved in sorted(folder.glob(f"{prefix}-*.svm")):
            if saved.stem.rsplit("-", 1)[1] == hashlib.sha256(saved.read_bytes()).hexdigest()[:16]:
                return dlib.fhog_object_detector(str(saved))
    except (OSError, RuntimeError):  # no home, no permission, a file dlib cannot read: build it
        folder = None
    detector = dlib.get_frontal_face_detector()
    if folder is not None:
        _save_detector(detector, folder, prefix)
    return detector


def _save_detector(detector, folder: Path, prefix: str) -> None:
    import tempfile

    from preprocess.fileio import NotWritable, write_bytes_atomic

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as scratch:  # dlib writes only to a path of its own
            raw = Path(scratch) / "detector.svm"
            detector.save(str(raw))
            data = raw.read_bytes()
        write_bytes_atomic(folder / f"{prefix}-{hashlib.sha256(data).hexdigest()[:16]}.svm", data)
    except (OSError, NotWritable):
        pass


class DlibHogDetector:
    """dlib's HOG + linear SVM frontal face detector (`dlib.get_frontal_face_detector()`), frame by frame.

    Its boxes are tighter than RetinaFace's (brows to chin); the align stage's dlib landmarks are trained on
    exactly these boxes, and its FAN path rescales any box. Scores are SVM margins, not probabilities.
    The track step gives it gray frames (`wants_rgb` False): HOG on one channel costs 20-35% less than on
    three (dlib takes the strongest gradient of the three), and the gray frame comes free from the decoder.
    """

    wants_rgb = False

    def __init__(self, params: DetectorParams = DetectorParams()):
        self.params = params
        self._detector = frontal_face_detector()

    def __call__(self, frames: np.ndarray) -> list[np.ndarray]:
        """`frames`: uint8 (B, H, W, 3) RGB or (B, H, W) gray. Boxes in the pixels of these frames, best first."""
        out = []
        for frame in frames:
            rects, scores, _ = self._detector.run(np.ascontiguousarray(frame), self.params.dlib_upsample,
                                                  self.params.dlib_threshold)
            dets = np.array([[r.left(), r.top(), r.right() + 1, r.bottom() + 1, s] for r, s in zip(rects, scores)],
                            np.float32).reshape(-1, 5)
            out.append(_nms(dets[np.argsort(-dets[:, 4], kind="stable")], self.params.nms))
        return out


def make_detector(name: str, params: DetectorParams, weights: Path | None = None, device: str | None = None):
    """The detector `track.detector` names; RetinaFace needs its weight file."""
    if name == "dlib":
        return DlibHogDetector(params)
    if name == "retinaface":
        if weights is None:
            raise FileNotFoundError("track.detector retinaface needs weights.retinaface")
        return RetinaFaceBatch(Path(weights), params, device)
    raise ValueError(f"track.detector {name!r} is not known: choose one of {', '.join(DETECTORS)}")


def _nms(dets: np.ndarray, threshold: float) -> np.ndarray:
    if len(dets) == 0:
        return np.zeros((0, 5), np.float32)
    return dets[_py_cpu_nms(dets, threshold)]


def _py_cpu_nms(dets: np.ndarray, thresh: float) -> list:
    """face-alignment's retinaface.box_utils.py_cpu_nms (BSD-3), verbatim: importing it imports torch (3 s)."""
    x1, y1, x2, y2, scores = dets[:, 0], dets[:, 1], dets[:, 2], dets[:, 3], dets[:, 4]
    areas = (x2 - x1) * (y2 - y1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        xx1 = np.maximum(x1[i], x1[order[1:]])
        yy1 = np.maximum(y1[i], y1[order[1:]])
        xx2 = np.minimum(x2[i], x2[order[1:]])
        yy2 = np.minimum(y2[i], y2[order[1:]])
        inter = np.maximum(0.0, xx2 - xx1) * np.maximum(0.0, yy2 - yy1)
        ovr = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[np.where(ovr <= thresh)[0] + 1]
    return keep


def detection_scale(width: int, height: int, short_side: int | None) -> float:
    """Downscale factor so the shorter side is at most `short_side` (never upscale).

    The shorter side, not the longer, so side-by-side or wide frames keep their faces as large as square ones.
    """
    if not short_side:
        return 1.0
    return min(1.0, short_side / min(width, height))


def detection_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """The small frame size: shorter side at most `short_side`, both sides even (I420 frames need it)."""
    s = detection_scale(width, height, short_side)
    return max(2, round(width * s / 2) * 2), max(2, round(height * s / 2) * 2)
