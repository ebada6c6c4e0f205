"""TrackParams: the `track` section of params.yaml. Each step's own params are a nested section of it."""
from __future__ import annotations

from dataclasses import dataclass, field

from preprocess.track.detect import DetectorParams
from preprocess.track.shots import ShotParams
from preprocess.track.sync import SyncParams
from preprocess.track.tracking import TrackingParams


@dataclass(frozen=True)
class TrackParams:
    detector: str = "dlib"  # dlib (HOG, weights in the wheel: offline) | retinaface (the paper's; weights.retinaface)
    detect_short_side: int | None = 192  # px: frames are shrunk so their shorter side is at most this (null: full size)
    detect_stride: int = 4  # detect every n-th frame, boxes in between from the tracks (1: every frame)
    batch: int = 32  # frames per detector call
    detect: DetectorParams = field(default_factory=DetectorParams)
    shots: ShotParams = field(default_factory=ShotParams)
    tracking: TrackingParams = field(default_factory=TrackingParams)
    sync: SyncParams = field(default_factory=SyncParams)
    # pretraining corpora only: segments of real videos whose chosen face agrees with the audio less than
    # this are dropped as unusable (null: keep all). Two scales: SyncNet confidence and av-energy correlation.
    pretrain_min_syncnet_confidence: float | None = None
    pretrain_min_energy_correlation: float | None = None
