"""Peak memory of the track and align steps on long talking-face videos (the "memory stays bounded" rule).

    python benchmarks/bench_memory.py [--minutes 2 10] [--clip PATH] [--work DIR] [--out results.json]

A GRID clip is looped with ffmpeg (`-stream_loop`) to each length and resampled like the resample stage.
Each step then runs in its own fresh process (default params, RetinaFace on CPU with one thread as in the
stage, dlib landmarks as in params.yaml), which reports its peak RSS (ru_maxrss) and its RSS just before the
step (after imports and model loading), so the step's own growth is `peak - before`. Bounded means that
growth stays about the same from 2 to 10 minutes. Looped videos are cached in --work between runs.
Nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))

DEFAULT_CLIP = SHARED / "testdata" / "grid" / "bbaf2n.mpg"
RETINAFACE = SHARED / "weights" / "retinaface" / "retinaface_mobilenet0.25.pth"


def looped_video(clip: Path, seconds: int, work: Path) -> tuple[Path, Path]:
    """The clip looped to `seconds`, resampled to the resample stage's 25 fps .mkv and 16 kHz .wav."""
    from preprocess.ffmpeg import run_ffmpeg
    from preprocess.resample.convert import ResampleParams, resample_video

    video, audio = work / f"{clip.stem}-{seconds}s.mkv", work / f"{clip.stem}-{seconds}s.wav"
    if video.exists() and audio.exists():
        return video, audio
    looped = work / f"{clip.stem}-{seconds}s-looped.mkv"
    # Re-encoded, not stream-copied: MPEG-PS timestamps restart at every loop and would confuse the fps filter.
    run_ffmpeg(["-stream_loop", "-1", "-i", str(clip), "-t", str(seconds), "-c:v", "libx264", "-preset",
                "ultrafast", "-crf", "18", "-c:a", "pcm_s16le", str(looped)])
    resample_video(looped, video, audio, ResampleParams())
    looped.unlink()
    return video, audio


def rss_now_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def child_track(video: Path, audio: Path, boxes_out: Path) -> dict:
    import pandas as pd
    import torch

    from preprocess.track.detect import RetinaFaceBatch
    from preprocess.track.track_params import TrackParams
    from preprocess.track.track_video import track_video

    torch.set_num_threads(1)  # as the stage does: one task per worker process
    params = TrackParams()
    detector = RetinaFaceBatch(RETINAFACE, params.detect, device="cpu")
    before = rss_now_mb()
    start = time.perf_counter()
    result = track_video(video, audio, params, detector)
    seconds = time.perf_counter() - start
    pd.DataFrame(result.boxes).to_parquet(boxes_out, index=False)
    pd.DataFrame(result.segments).to_parquet(boxes_out.with_suffix(".segments.parquet"), index=False)
    return {"frames": result.details["frames"], "seconds": seconds, "rss_before_mb": before}


def child_align(video: Path, audio: Path, boxes_out: Path) -> dict:
    import pandas as pd

    from pipeline.corpora import load_params
    from preprocess.align.align_params import AlignParams
    from preprocess.align.align_video import align_video, make_landmarker

    params = AlignParams(**(load_params(ROOT / "params.yaml").get("align") or {}))
    landmarker = make_landmarker(params)
    boxes = {name: column.to_numpy() for name, column in pd.read_parquet(boxes_out).items()}
    tracks = pd.read_parquet(boxes_out.with_suffix(".segments.parquet")).to_dict("records")
    out = boxes_out.with_suffix(".npz")
    before = rss_now_mb()
    start = time.perf_counter()
    details = align_video(video, boxes, tracks, params, landmarker, out)
    seconds = time.perf_counter() - start
    out.unlink()
    return {"frames": details["n_frames"], "seconds": seconds, "rss_before_mb": before}


def run_child(step: str, video: Path, audio: Path, boxes_out: Path) -> dict:
    """One step in a fresh interpreter, so its peak RSS is its own."""
    cmd = [sys.executable, __file__, "--child", step, str(video), str(audio), str(boxes_out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{step} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[2, 10])
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--steps", nargs="+", default=["track", "align"], choices=["track", "align"])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "avlips-bench-memory")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here too")
    parser.add_argument("--child", nargs=4, metavar=("STEP", "VIDEO", "AUDIO", "BOXES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        step, video, audio, boxes = args.child
        figures = (child_track if step == "track" else child_align)(Path(video), Path(audio), Path(boxes))
        figures["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(figures))
        return

    args.work.mkdir(parents=True, exist_ok=True)
    results = []
    print(f"{'step':<6} {'minutes':>7} {'frames':>7} {'seconds':>8} {'RSS before':>11} {'peak RSS':>9} "
          f"{'growth':>8}")
    for minutes in args.minutes:
        video, audio = looped_video(args.clip, round(minutes * 60), args.work)
        boxes = args.work / f"{video.stem}-boxes-{os.getpid()}.parquet"
        for step in args.steps:
            if step == "align" and not boxes.exists():
                run_child("track", video, audio, boxes)  # align needs the track's boxes
            r = {"step": step, "minutes": minutes, **run_child(step, video, audio, boxes)}
            r["growth_mb"] = r["peak_rss_mb"] - r["rss_before_mb"]
            results.append(r)
            print(f"{step:<6} {minutes:>7g} {r['frames']:>7} {r['seconds']:>8.1f} {r['rss_before_mb']:>8.0f} MB "
                  f"{r['peak_rss_mb']:>6.0f} MB {r['growth_mb']:>5.0f} MB", flush=True)
        for leftover in args.work.glob(f"{boxes.stem}*"):
            leftover.unlink()
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
