"""Cost of the robustness stage per corruption level: seconds per hour of video, split into decode, corrupt,
warp and score.

    python benchmarks/bench_robustness.py                    # demo detector (params.yaml model.video), 1 thread
    python benchmarks/bench_robustness.py --config full      # the paper's R18 + L6 detector
    python benchmarks/bench_robustness.py --types blur,compression --threads 2

Runs the stage's own path (preprocess/corrupted_crops.py render -> preprocess/crop/render.py, then
train/scoring.py video_clip_logits) on the eval videos of the test pipeline project (the CREMA-D clips,
480x360, resampled, tracked, aligned and packed in a scratch folder first, as the tests build it). Per video
and condition, timed inside the render: corrupt = time in preprocess.corrupt (the frame hook; for compression
the x264 re-encode of the file), warp = time in the renderer's warp_mouth (warpAffine of the kept frames),
decode = the rest of the render (decoding, grey conversion); score = the detector on the non-overlapping
25-frame clips. The detector is randomly initialised (same compute as a trained one). Nothing is asserted.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # pipeline_project: the pipeline project the tests use
FPS = 25


def project() -> Path:
    import os

    import pipeline_project as h

    root = h.benchmark_project()
    os.chdir(root)  # the collect index names shards relative to the project root, as in a stage
    return root


def detector(config: str):
    import torch

    from models.detector import Detector
    from models.video import VideoEncoderConfig
    from pipeline.params import paper_params
    from preprocess.settings import load_yaml, section

    torch.manual_seed(0)
    params = paper_params(ROOT / "params.yaml") if config == "full" else load_yaml(ROOT / "params.yaml")
    cfg = section(params, "model.video", VideoEncoderConfig)
    return Detector(cfg).eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=("demo", "full"), default="demo")
    p.add_argument("--threads", type=int, default=1, help="torch and OpenCV threads")
    p.add_argument("--types", default="", help="comma-separated types (default: all)")
    p.add_argument("--preset", default="medium", help="x264 preset of the compression levels")
    p.add_argument("--batch", type=int, default=32, help="clips per forward")
    a = p.parse_args()
    import cv2
    import numpy as np
    import torch

    from preprocess import corrupt
    from preprocess.corrupt import TYPES, Corruption, RobustnessParams
    from preprocess.corrupted_crops import load_geometry, render
    from preprocess.shardformat import crops_to_gray
    from preprocess.media import iter_frame_batches
    from train.robustness import eval_videos
    from train.scoring import video_clip_logits

    torch.set_num_threads(a.threads)
    cv2.setNumThreads(a.threads)
    root = project()
    det = detector(a.config)
    types = [t for t in a.types.split(",") if t] or list(TYPES)
    params = RobustnessParams(types=types, compression_preset=a.preset)
    videos = eval_videos(root / "data" / "collect")
    conditions = [Corruption(types[0], 0), *params.corruptions()]
    totals = {str(c): np.zeros(4) for c in conditions}  # decode, corrupt, warp, score
    seconds = 0.0
    original_apply, original_compress = corrupt.apply, corrupt.compress_file
    spent = [0.0]

    def timed(fn):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - t
        return wrapper

    from preprocess.crop import render as renderer

    original_warp = renderer.warp_mouth
    warp_spent = [0.0]

    def warp_mouth(*args):
        t = time.perf_counter()
        try:
            return original_warp(*args)
        finally:
            warp_spent[0] += time.perf_counter() - t

    corrupt.apply, corrupt.compress_file = timed(original_apply), timed(original_compress)
    renderer.warp_mouth = warp_mouth
    try:
        for v in videos.itertuples():
            video = root / "data" / "resample" / v.corpus / "video" / f"{v.video_id}.mkv"
            npz = root / "data" / "align" / v.corpus / "aligned" / f"{v.video_id}.npz"
            seconds += sum(len(b) for b in iter_frame_batches(video, batch=16)) / FPS
            piece, frames, transforms, color = load_geometry(npz)
            for c in conditions:
                spent[0] = warp_spent[0] = 0.0
                t = time.perf_counter()
                crops = crops_to_gray(render(video, frames, transforms, color, c, params, v.video_id))
                rendered = time.perf_counter() - t
                t = time.perf_counter()
                for pc in np.unique(piece):
                    video_clip_logits(det, crops[piece == pc], "cpu", a.batch)
                score = time.perf_counter() - t
                totals[str(c)] += [rendered - spent[0] - warp_spent[0], spent[0], warp_spent[0], score]
    finally:
        corrupt.apply, corrupt.compress_file = original_apply, original_compress
        renderer.warp_mouth = original_warp
    n_params = sum(q.numel() for q in det.parameters()) / 1e6
    print(f"{len(videos)} eval videos of the test project ({seconds:.1f} s of 25 fps video, 480x360), detector "
          f"{a.config} ({n_params:.1f}M parameters), {a.threads} thread(s), x264 preset {a.preset}, CPU")
    print("seconds per hour of video, per condition (decode + corrupt + warp + score)")
    print(f"{'condition':<15}{'param':>6}{'decode':>9}{'corrupt':>9}{'warp':>8}{'score':>8}{'total':>9}")
    per_hour = 3600.0 / seconds
    grand = np.zeros(4)
    for c in conditions:
        row = totals[str(c)] * per_hour
        grand += row
        param = "-" if c.level == 0 else str(params.levels.parameter(c))
        name = "clean (0)" if c.level == 0 else str(c)
        print(f"{name:<15}{param:>6}{row[0]:9.0f}{row[1]:9.0f}{row[2]:8.0f}{row[3]:8.0f}{row.sum():9.0f}")
    share = grand / grand.sum() * 100
    print(f"all {len(conditions)} conditions: {grand.sum():.0f} s per hour of video ({grand.sum() / 3600:.2f} h); "
          f"decode {share[0]:.0f}%, corrupt {share[1]:.0f}%, warp {share[2]:.0f}%, score {share[3]:.0f}%")


if __name__ == "__main__":
    main()
