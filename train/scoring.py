"""Scoring API of a fine-tuned detector: save/load `artifacts/finetune/detector.pt`, cut a video into clips,
clip logits and the video-level score. Used by the evaluate stage and by `python -m pipeline predict`.

Clips: non-overlapping, `clip` frames each (25: 1 s), starting at frame 0 of every kept segment. A tail
shorter than a clip is left out (it is never padded or overlapped): a model fine-tuned on 25-frame clips
only ever sees 25-frame clips, and each clip covers one distinct second, which is what a per-second
timeline shows. A segment shorter than one clip therefore yields no clip (the preprocessing stages
already drop segments under 25 frames).
Video score = mean of its clip logits; fake probability = sigmoid(score).
"""
from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np
import torch

from models.detector import Detector, DetectorConfig
from models.video import VideoEncoderConfig
from train.augment import AugmentConfig, centre_clip
from train.checkpoint import save_atomic

FORMAT = "avlips-detector/1"


def save_detector(path: str | os.PathLike, detector: Detector, meta: dict) -> None:
    """Weights + both configs + `meta` (params hash, shard sha256s, history: plain data only)."""
    save_atomic({"format": FORMAT,
                 "weights": {k: v.detach().cpu() for k, v in detector.state_dict().items()},
                 "video_config": dataclasses.asdict(detector.video_cfg),
                 "detector_config": dataclasses.asdict(detector.cfg),
                 "meta": meta}, path)


def save_untrained(path: str | os.PathLike, reason: str, meta: dict) -> None:
    """The finetune stage's output when there was nothing to train (no finetune corpus): a small file that
    says why, so `dvc repro` stays green and every reader gives the reason instead of a missing file."""
    save_atomic({"format": FORMAT, "trained": False, "reason": reason, "meta": meta}, path)


def read_checkpoint(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no fine-tuned detector at {path}: it is made by the finetune stage "
                                f"(`dvc repro finetune`), or pass the path of another detector.pt")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a detector checkpoint (format {FORMAT!r}); "
                         "artifacts/pretrain/encoder.pt is a pretrained encoder, not a detector")
    return ckpt


def untrained_reason(path: str | os.PathLike) -> str | None:
    """Why the finetune stage trained nothing (its reason), or None for a trained detector."""
    ckpt = read_checkpoint(path)
    return None if ckpt.get("trained", True) else str(ckpt["reason"])


def _config(cls, d: dict):
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def load_detector(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[Detector, dict]:
    """-> (detector in eval mode on `device`, meta)."""
    ckpt = read_checkpoint(path)
    if not ckpt.get("trained", True):
        raise ValueError(f"the detector at {path} was not trained: {ckpt['reason']}")
    detector = Detector(_config(VideoEncoderConfig, ckpt["video_config"]),
                        _config(DetectorConfig, ckpt["detector_config"]))
    detector.load_state_dict(ckpt["weights"], strict=True)
    return detector.to(device).eval(), ckpt["meta"]


def clip_starts(n_frames: int, clip: int = 25) -> list[int]:
    """Starts of the non-overlapping clips of a segment; the tail shorter than `clip` is left out."""
    if clip < 1:
        raise ValueError(f"clip length must be >= 1 frame, got {clip}")
    return list(range(0, n_frames - clip + 1, clip))


def input_config(detector: Detector) -> AugmentConfig:
    """The evaluation view the detector was trained with (centre crop and normalisation)."""
    c = detector.cfg
    return AugmentConfig(crop=c.crop, mean=c.mean, std=c.std)


@torch.inference_mode()
def video_clip_logits(detector: Detector, video: np.ndarray, device: str | torch.device = "cpu",
                      batch_size: int = 32) -> np.ndarray:
    """uint8 (T, 96, 96) mouth crops of one segment -> float32 (n_clips,) logits, clip i covering frames
    [clip_starts[i], clip_starts[i] + clip). The detector must be in eval mode (load_detector returns it so)."""
    if video.ndim != 3 or video.dtype != np.uint8:
        raise ValueError(f"expected uint8 (T, H, W) grayscale mouth crops, got {video.dtype}{video.shape}")
    view = input_config(detector)
    starts = clip_starts(len(video), detector.cfg.clip)
    out = np.empty(len(starts), np.float32)
    for i in range(0, len(starts), batch_size):
        chunk = starts[i:i + batch_size]
        batch = torch.stack([centre_clip(video[s:s + detector.cfg.clip], view) for s in chunk])
        out[i:i + len(chunk)] = detector(batch.to(device)).float().cpu().numpy()
    return out


def video_score(clip_logits) -> float:
    """Mean of the clip logits of all kept segments of a video (concatenate them first)."""
    logits = np.asarray(clip_logits, np.float64).reshape(-1)
    if logits.size == 0:
        raise ValueError("no clip to score: the video has no kept segment of at least one clip")
    return float(logits.mean())


def probability(score: float) -> float:
    """Fake probability of a video score (a logit)."""
    return 1.0 / (1.0 + math.exp(-score)) if score >= 0 else math.exp(score) / (1.0 + math.exp(score))
