"""Evaluation throughput of the detector: videos/s, clips/s and seconds of video scored per second.

    python benchmarks/bench_evaluate.py                       # CPU, R18 + 6-layer transformer, 2 threads
    python benchmarks/bench_evaluate.py --config tiny --threads 1 --repeat 5

Runs the evaluate stage's own scoring path (train/videoscores.py: shard reading, centre crop, non-overlapping
25-frame clips, batched forward, mean per video) over the shards the pipeline makes from the shared clips
(resample, track, align, crop and collect in a scratch folder first, as the tests build it: a minute or two on
CPU): the GRID clips (3 s each) and the CREMA-D clips. "full" is the paper's R18 + L6 detector, randomly
initialised (same compute as a trained one). The first pass warms up and is not timed.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # pipeline_project: the pipeline project the tests use


def shards() -> list[str]:
    import pipeline_project as h

    root = h.benchmark_project()
    shards = h.collected_shards(root, "pretrain", "train", "val") + h.collected_shards(root, "eval", "test")
    return [s.path for s in shards]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=("full", "tiny"), default="full")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=32, help="clips per forward")
    p.add_argument("--repeat", type=int, default=2, help="timed passes over the shards")
    p.add_argument("--device", default="cuda" if "--cuda" in sys.argv else "cpu")
    a = p.parse_args()
    import torch

    from models.detector import Detector
    from models.presets import TINY_VIDEO
    from models.video import VideoEncoderConfig
    from pipeline.params import paper_params
    from preprocess.settings import section
    from train.videoscores import score_videos

    torch.set_num_threads(a.threads)
    paths = shards()
    torch.manual_seed(0)
    video_cfg = TINY_VIDEO if a.config == "tiny" else \
        section(paper_params(ROOT / "params.yaml"), "model.video", VideoEncoderConfig)  # R18 + L6
    det = Detector(video_cfg).to(a.device).eval()
    n_params = sum(p.numel() for p in det.parameters()) / 1e6
    videos = score_videos(det, paths, a.device, a.batch)  # warm-up
    clips = sum(v.n_clips for v in videos)
    t0 = time.perf_counter()
    for _ in range(a.repeat):
        score_videos(det, paths, a.device, a.batch)
    dt = (time.perf_counter() - t0) / a.repeat
    print(f"config {a.config} ({n_params:.1f}M parameters), device {a.device}, {a.threads} threads, batch {a.batch}")
    print(f"{len(videos)} videos, {clips} clips of 25 frames ({clips} s of video) per pass; {dt:.2f} s per pass")
    print(f"  {len(videos) / dt:.2f} videos/s, {clips / dt:.2f} clips/s = {clips / dt:.2f} s of video per s "
          f"({60 * dt / clips:.1f} s per minute of 25 fps video)")
    print(f"  peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
