"""Benchmark of the demo corpus: generation time per clip (render and write, real plus each fake), and the two
face detectors on demo frames at the track stage's detection size: ms per frame and how often they find the
face. RetinaFace runs only when its weights are found (params-free lookup: $AVLIPS_WEIGHTS, hub cache, or
../shared/weights). Prints one table; nothing is asserted.

    python benchmarks/bench_demo.py [--clips 3] [--threads 1]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from preprocess.demo.fakes import METHODS  # noqa: E402
from preprocess.demo.plan import REAL, demo_params, plan, render_clip  # noqa: E402
from preprocess.demo.writer import write_video  # noqa: E402
from preprocess.track.detect import DetectorParams, DlibHogDetector, RetinaFaceBatch, detection_scale  # noqa: E402


def retinaface_weights() -> Path | None:
    from preprocess.weights import RETINAFACE_FILE, resolve_weights

    local = ROOT.parent / "shared" / "weights" / "retinaface" / RETINAFACE_FILE
    if local.is_file():
        return local
    try:
        return resolve_weights(None, RETINAFACE_FILE)
    except FileNotFoundError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    params = demo_params({"demo": {"identities": 6, "corpora": {"bench": {"clips": 1, "methods": list(METHODS)}}}})
    clips = plan(params, "bench")[:args.clips]
    render_clip(params, clips[0])  # face geometry of the photos found once, outside the timing
    render_s = write_s = 0.0
    frames = []
    with tempfile.TemporaryDirectory() as tmp:
        for clip in clips:
            t0 = time.perf_counter()
            audio, videos, _ = render_clip(params, clip)
            t1 = time.perf_counter()
            for method, video in videos.items():
                write_video(Path(tmp) / clip.relpath(method), video, params.fps, audio, params.sample_rate)
            write_s += time.perf_counter() - t1
            render_s += t1 - t0
            frames.append(videos[REAL][::10])
    n_videos = len(clips) * (1 + len(METHODS))
    print(f"demo clip: {params.seconds:g} s at {params.fps} fps, {params.size}px; {len(clips)} clips x "
          f"(real + {len(METHODS)} fakes), threads={args.threads}")
    print(f"  render {render_s / len(clips):.2f} s per clip (all {1 + len(METHODS)} videos), "
          f"write {write_s / n_videos:.2f} s per video")
    frames = np.concatenate(frames)
    s = detection_scale(params.size, params.size, 192)
    small = np.stack([cv2.resize(f, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) for f in frames])
    detectors = {"dlib HOG": DlibHogDetector(DetectorParams())}
    weights = retinaface_weights()
    if weights is not None:
        detectors["RetinaFace"] = RetinaFaceBatch(weights, DetectorParams(), device="cpu")
    print(f"detection on {len(small)} frames at {small.shape[2]}x{small.shape[1]} (the track stage's size):")
    for name, detector in detectors.items():
        detector(small[:2])
        t0 = time.perf_counter()
        dets = [d for i in range(0, len(small), 16) for d in detector(small[i:i + 16])]
        ms = 1000 * (time.perf_counter() - t0) / len(small)
        found = np.mean([len(d) > 0 for d in dets])
        side = np.median([d[0, 2] - d[0, 0] for d in dets if len(d)]) if found else float("nan")
        print(f"  {name:10s} {ms:6.1f} ms/frame, face found in {found:.0%} of frames, median box side {side:.0f}px")
    if weights is None:
        print("  RetinaFace: weights not found, not measured")


if __name__ == "__main__":
    main()
