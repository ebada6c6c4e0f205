"""Parameters of the align stage (params.yaml `align:`); every field changes results, so all are hashed."""
from __future__ import annotations

from dataclasses import dataclass

from preprocess.align.smoothing import SMOOTHING

BACKENDS = ("fan", "dlib")


@dataclass(frozen=True)
class AlignParams:
    backend: str = "dlib"  # dlib (offline, CPU) | fan (face-alignment 2DFAN4, the paper's choice: params/paper.yaml)
    batch_size: int = 32  # frames per FAN forward pass (dlib takes frames one at a time, chained)
    fan_reference_scale: float = 165.0  # FAN crop size rule for the tracker's boxes (RetinaFace: 165)
    fan_min_score: float = 0.2  # mean heatmap peak below this: the frame's landmarks count as missing
    dlib_refine: bool = True  # dlib on boxes rebuilt from landmarks (the frame before, or a first pass)
    max_jump: float = 0.4  # landmarks further than this many mouth widths off the trajectory of the frames
    # around them (smoothing.landmark_jumps) count as missing; 0: keep every plausible frame
    max_gap: int = 12  # missing-landmark runs up to this many frames are interpolated, longer ones split
    min_frames: int = 25  # pieces shorter than this after splitting are dropped (one 1-s clip)
    smooth_window: int = 6  # centred moving average over +-this many frames before estimating transforms
    smoothing: str = "follow"  # follow (moving average, plus the head motion it lags behind) | moving_average
    follow_speed: float = 1.5  # follow: head speed (crop px/frame) at which the lag correction is half on
    color: bool = False  # RGB mouth crops (T, 96, 96, 3) instead of grayscale (T, 96, 96)

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"align.backend {self.backend!r} is not one of {', '.join(BACKENDS)}")
        if self.smoothing not in SMOOTHING:
            raise ValueError(f"align.smoothing {self.smoothing!r} is not one of {', '.join(SMOOTHING)}")
        if self.follow_speed < 0:
            raise ValueError("align.follow_speed must be >= 0")
        if self.max_jump < 0:
            raise ValueError("align.max_jump must be >= 0 (0: no outlier test)")
        if self.max_gap < 0 or self.smooth_window < 0 or self.min_frames < 1:
            raise ValueError("align.max_gap and align.smooth_window must be >= 0, align.min_frames >= 1")
