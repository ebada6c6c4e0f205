"""Video-level scores of the samples in shards: every kept segment of a video cut into non-overlapping clips
(train/scoring.py), the clip logits of all its segments pooled into one mean per video.

Under torchrun each rank scores every world-th sample (by position in the shard order, no padding), then
the per-segment logits are gathered on every rank and merged by sample key: a segment is counted once.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from models.detector import Detector
from preprocess.shardformat import decode_sample, iter_samples
from train.scoring import video_clip_logits


@dataclass(frozen=True)
class VideoScore:
    corpus: str
    video_id: str
    label: str
    method: str | None
    split: str
    n_clips: int
    n_segments: int
    score: float | None        # mean clip logit; None when no segment holds a whole clip


def segment_logits(detector: Detector, paths: list[str], device, batch_size: int,
                   keep: Callable[[dict], bool] = lambda meta: True, rank: int = 0, world: int = 1,
                   progress: str | None = None) -> dict[str, tuple[dict, np.ndarray]]:
    """{sample key: (json meta, clip logits)} for this rank's share of the kept samples."""
    out, t0, n = {}, time.perf_counter(), 0
    was_training = detector.training
    detector.eval()
    for i, sample in enumerate(iter_samples(paths)):
        if i % world != rank:
            continue
        key, video, _, meta = decode_sample(sample)
        if not keep(meta):
            continue
        out[key] = (meta, video_clip_logits(detector, video, device, batch_size))
        n += 1
        if progress and n % 100 == 0:
            print(f"{progress}: {n} segments scored ({n / (time.perf_counter() - t0):.1f}/s)",
                  file=sys.stderr, flush=True)
    if progress:
        print(f"{progress}: {n} segments scored in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    detector.train(was_training)
    return out


def gather(parts: dict, world: int) -> dict:
    """Merge every rank's {key: value} (all ranks get the union; keys are unique samples)."""
    if world == 1:
        return parts
    everyone: list = [None] * world
    dist.all_gather_object(everyone, parts)
    merged = {}
    for p in everyone:
        merged.update(p)  # a key scored twice (never, with the strided split) would still count once
    return merged


def pool_videos(segments: dict[str, tuple[dict, np.ndarray]]) -> list[VideoScore]:
    """Per video (corpus, video_id): mean of all its segments' clip logits; sorted by corpus, video_id."""
    by_video: dict[tuple[str, str], list] = {}
    for key in sorted(segments):
        meta, logits = segments[key]
        by_video.setdefault((meta["corpus"], meta["video_id"]), []).append((meta, logits))
    out = []
    for (corpus, video_id), parts in sorted(by_video.items()):
        logits = np.concatenate([lg for _, lg in parts]).astype(np.float64)
        meta = parts[0][0]
        out.append(VideoScore(corpus, video_id, str(meta.get("label")), meta.get("method"),
                              str(meta.get("split")), int(len(logits)), len(parts),
                              float(logits.mean()) if len(logits) else None))
    return out


def score_videos(detector: Detector, paths: list[str], device, batch_size: int,
                 keep: Callable[[dict], bool] = lambda meta: True, rank: int = 0, world: int = 1,
                 progress: str | None = None) -> list[VideoScore]:
    with torch.inference_mode():
        parts = segment_logits(detector, paths, device, batch_size, keep, rank, world, progress)
    return pool_videos(gather(parts, world))
