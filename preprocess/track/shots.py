"""Shot cuts with PySceneDetect's ContentDetector, fed frame by frame from frames we already decoded."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from preprocess.contract import FPS



@dataclass(frozen=True)
class ShotParams:
    threshold: float = 27.0  # ContentDetector's default: mean HSV change that makes a cut
    min_shot_frames: int = 15  # ContentDetector's default minimum scene length


class ShotCuts:
    """Collects the frame indices where a new shot starts. Feed RGB batches in order; read `cuts` at the end."""

    def __init__(self, params: ShotParams = ShotParams()):
        from scenedetect.detectors import ContentDetector  # here: the stages import ShotParams (0.8 s import)

        self._detector = ContentDetector(threshold=params.threshold, min_scene_len=params.min_shot_frames)
        self._next = 0
        self._cuts: list[int] = []

    def feed(self, frames_rgb: np.ndarray) -> None:
        from scenedetect import FrameTimecode

        for frame in frames_rgb:
            bgr = np.ascontiguousarray(frame[..., ::-1])  # PySceneDetect expects OpenCV's BGR order
            found = self._detector.process_frame(FrameTimecode(self._next, fps=float(FPS)), bgr)
            self._cuts += [tc.frame_num for tc in found]
            self._next += 1

    @property
    def cuts(self) -> list[int]:
        from scenedetect import FrameTimecode

        tail = self._detector.post_process(FrameTimecode(max(self._next - 1, 0), fps=float(FPS)))
        return sorted({*self._cuts, *(tc.frame_num for tc in tail)} - {0})
