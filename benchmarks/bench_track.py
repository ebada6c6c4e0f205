"""Benchmark of the track step: frames/s per core (and per GPU when there is one) beside decode-only speed,
and the effect of the detection input size and stride on speed and on box accuracy.

Box accuracy: per frame, IoU of the stage's (tracked, smoothed) box with RetinaFace run on every frame at full
resolution (the reference the issue names). Clips: the shared real test clips, resampled to a scratch folder.

    python benchmarks/bench_track.py [--out results.json] [--device cpu|cuda] [--repeat 2]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))

from preprocess.media import iter_frame_batches  # noqa: E402
from preprocess.resample.convert import ResampleParams, resample_video  # noqa: E402
from preprocess.track.detect import RetinaFaceBatch  # noqa: E402
from preprocess.track.track_params import TrackParams  # noqa: E402
from preprocess.track.tracking import iou_matrix  # noqa: E402
from preprocess.track.track_video import track_video  # noqa: E402

CONFIGS = [  # (label, detect_short_side, detect_stride)
    ("full-res, every frame", None, 1),
    ("full-res, stride 2", None, 2),
    ("full-res, stride 4", None, 4),
    ("short side 192, stride 2", 192, 2),
    ("short side 192, stride 3 (default)", 192, 3),
    ("short side 144, every frame", 144, 1),
    ("short side 144, stride 2", 144, 2),
    ("short side 144, stride 3", 144, 3),
    ("short side 144, stride 5", 144, 5),
    ("short side 112, stride 2", 112, 2),
]


def clips(scratch: Path) -> list[tuple[Path, Path]]:
    testdata = SHARED / "testdata"
    sources = sorted((testdata / "grid").glob("*.mpg")) + sorted((testdata / "cremad").glob("*.flv"))
    if not sources:
        raise SystemExit(f"no test clips under {SHARED / 'testdata'}")
    out = []
    for src in sources:
        video, audio = scratch / f"{src.stem}.mkv", scratch / f"{src.stem}.wav"
        resample_video(src, video, audio, ResampleParams())
        out.append((video, audio))
    return out


def decode_fps(videos: list[Path], repeat: int) -> float:
    best = 0.0
    for _ in range(repeat):
        start, n = time.perf_counter(), 0
        for video in videos:
            for batch in iter_frame_batches(video, batch=32):
                n += len(batch)
        best = max(best, n / (time.perf_counter() - start))
    return best


def reference_boxes(detector: RetinaFaceBatch, video: Path) -> list[np.ndarray]:
    """RetinaFace on every frame at full resolution, raw boxes."""
    out = []
    for batch in iter_frame_batches(video, batch=32):
        out += detector(batch)
    return out


def run_config(detector, data, params: TrackParams, repeat: int) -> dict:
    best_time, ious = np.inf, []
    for r in range(repeat):
        start, n_frames = time.perf_counter(), 0
        results = []
        for (video, audio), _ in data:
            result = track_video(video, audio, params, detector)
            results.append(result)
            n_frames += int(result.details["frames"])
        best_time = min(best_time, time.perf_counter() - start)
    for ((video, _), ref), result in zip(data, results):
        for row in pd.DataFrame(result.boxes).itertuples():
            found = ref[row.frame]
            ious.append(iou_matrix(np.array([[row.x1, row.y1, row.x2, row.y2]]), found).max() if len(found) else 0.0)
    ious = np.array(ious)
    return {"fps": n_frames / best_time, "frames": n_frames, "median_iou": float(np.median(ious)),
            "p05_iou": float(np.percentile(ious, 5)), "min_iou": float(ious.min()),
            "frac_iou_ge_0.9": float((ious >= 0.9).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.device == "cpu":  # per-core figures: one core, one thread everywhere
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        torch.set_num_threads(1)
        cv2.setNumThreads(1)
    weights = SHARED / "weights" / "retinaface" / "retinaface_mobilenet0.25.pth"
    detector = RetinaFaceBatch(weights, device=args.device)
    with tempfile.TemporaryDirectory() as scratch:
        pairs = clips(Path(scratch))
        videos = [v for v, _ in pairs]
        data = [(p, reference_boxes(detector, p[0])) for p in pairs]
        report = {"device": args.device, "torch_threads": torch.get_num_threads(),
                  "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
                  "clips": len(pairs), "decode_only_fps": decode_fps(videos, args.repeat), "configs": []}
        track_video(*pairs[0], TrackParams(), detector)  # warm-up
        for label, short_side, stride in CONFIGS:
            params = replace(TrackParams(), detect_short_side=short_side, detect_stride=stride)
            row = {"config": label, "detect_short_side": short_side, "detect_stride": stride,
                   **run_config(detector, data, params, args.repeat)}
            report["configs"].append(row)
            print(f"{label:38s} {row['fps']:7.1f} frames/s  median IoU {row['median_iou']:.3f}  "
                  f"p5 {row['p05_iou']:.3f}  min {row['min_iou']:.3f}", flush=True)
    unit = "per core" if args.device == "cpu" else f"per GPU ({report['gpu']})"
    print(f"decode only: {report['decode_only_fps']:.1f} frames/s ({unit}); "
          f"{report['clips']} clips, {report['configs'][0]['frames']} frames")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
