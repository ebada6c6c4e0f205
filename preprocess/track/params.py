"""TrackParams: the flat `track` section of params.yaml, split into each step's own params."""
from __future__ import annotations

from dataclasses import dataclass

from preprocess.track.detect import DetectorParams
from preprocess.track.shots import ShotParams
from preprocess.track.sync import SyncParams
from preprocess.track.tracking import TrackingParams


@dataclass(frozen=True)
class TrackParams:
    # detection
    detector: str = "dlib"  # dlib (HOG, weights in the wheel: offline) | retinaface (the paper's; weights.retinaface)
    detect_short_side: int | None = 192  # px: frames are shrunk so their shorter side is at most this (null: full size)
    detect_stride: int = 3  # detect every n-th frame, boxes in between from the tracks (1: every frame)
    batch: int = 32  # frames per detector call
    confidence: float = 0.5
    nms: float = 0.4
    dlib_threshold: float = 0.0  # dlib HOG score threshold
    dlib_upsample: int = 0  # dlib HOG: x2 upsamplings before detecting (finds faces under ~80 px; 4x slower each)
    # shots
    shot_threshold: float = 27.0
    min_shot_frames: int = 15
    # tracks
    iou_threshold: float = 0.5
    max_gap: int = 25
    min_track_frames: int = 25
    min_face_size: float = 64.0
    smooth_frames: int = 7
    bridge_gaps: bool = True
    # speaker choice and sync
    energy_max_lag: int = 3
    energy_min_margin: float = 0.15
    energy_max_rival: float = 0.25
    syncnet_vshift: int = 15
    syncnet_min_confidence: float = 3.0
    syncnet_min_margin: float = 1.0
    min_overlap_frames: int = 13
    # pretraining corpora only: segments of real videos whose chosen face agrees with the audio less than
    # this are dropped as unusable (null: keep all). Two scales: SyncNet confidence and av-energy correlation.
    pretrain_min_syncnet_confidence: float | None = None
    pretrain_min_energy_correlation: float | None = None

    def detector_params(self) -> DetectorParams:
        return DetectorParams(self.confidence, self.nms, self.dlib_threshold, self.dlib_upsample)

    def shots(self) -> ShotParams:
        return ShotParams(self.shot_threshold, self.min_shot_frames)

    def tracking(self) -> TrackingParams:
        return TrackingParams(self.iou_threshold, self.max_gap, self.min_track_frames, self.min_face_size,
                              self.smooth_frames, self.bridge_gaps)

    def sync(self) -> SyncParams:
        return SyncParams(self.energy_max_lag, self.energy_min_margin, self.energy_max_rival, self.syncnet_vshift,
                          self.syncnet_min_confidence, self.syncnet_min_margin, self.min_overlap_frames)
