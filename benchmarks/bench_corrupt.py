"""Cost of each corruption (preprocess/corrupt.py) per type and level, on one core, at 360p-like frames.

    python benchmarks/bench_corrupt.py [--frames 250] [--size 640x360] [--preset medium] [--types blur,jpeg]

Real GRID frames (../shared/testdata) resized to --size; each level runs on --frames frames (best of --repeat).
Prints frames per second and the seconds one hour of 25 fps video would take; nothing is asserted. Compression
is timed as the robustness stage runs it: the GRID clip files (360x288) re-encoded by x264 (one thread) and the
temp file decoded back (corrupt.compress_video); --size does not apply to it.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
TESTDATA = REPO.parent / "shared" / "testdata"
FRAMES_PER_HOUR = 25 * 3600


def real_frames(n: int, width: int, height: int) -> np.ndarray:
    """n RGB frames of the GRID clips, one after another, resized to width x height."""
    from preprocess.media import read_frames

    clips = sorted((TESTDATA / "grid").glob("*.mpg"))
    if not clips:
        raise SystemExit(f"needs the real test clips in {TESTDATA}")
    frames, i = [], 0
    while len(frames) < n:
        frames.extend(read_frames(clips[i % len(clips)]))
        i += 1
    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames[:n]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=250, help="frames per measurement (250: 10 s of video)")
    parser.add_argument("--size", default="640x360", help="frame size WxH")
    parser.add_argument("--preset", default="medium", help="x264 preset of the compression levels")
    parser.add_argument("--repeat", type=int, default=2, help="runs per level; the fastest counts")
    parser.add_argument("--batch", type=int, default=64, help="frames per batch handed to apply()")
    parser.add_argument("--types", default="", help="comma-separated types to time (default: all)")
    args = parser.parse_args()
    cv2.setNumThreads(1)  # one core per video, as the pipeline's dask workers run

    from preprocess.corrupt import TYPES, Corruption, CorruptionLevels, apply, compress_video

    width, height = (int(v) for v in args.size.lower().split("x"))
    frames = real_frames(args.frames, width, height)
    batches = [frames[i:i + args.batch] for i in range(0, len(frames), args.batch)]
    levels = CorruptionLevels()
    print(f"{args.frames} frames {width}x{height} RGB, batches of {args.batch}, x264 preset {args.preset}, "
          f"cv2 threads 1, best of {args.repeat}")
    print(f"{'type':<12}{'level':>6}{'param':>7}{'frames/s':>11}{'s per hour':>12}")
    for type_ in [t for t in args.types.split(",") if t] or TYPES:
        for level in range(1, levels.count(type_) + 1):
            corruption = Corruption(type_, level)
            best = float("inf")
            for _ in range(args.repeat):
                start = time.perf_counter()
                if type_ == "compression":
                    done = sum(len(b) for clip in sorted((TESTDATA / "grid").glob("*.mpg"))
                               for b in compress_video(clip, levels.parameter(corruption), args.preset))
                else:
                    done = sum(len(b) for b in apply(iter(batches), corruption, seed=0))
                    assert done == len(frames)
                best = min(best, time.perf_counter() - start)
            fps = done / best
            print(f"{type_:<12}{level:>6}{levels.parameter(corruption):>7}{fps:>11.1f}{FRAMES_PER_HOUR / fps:>12.0f}",
                  flush=True)


if __name__ == "__main__":
    main()
