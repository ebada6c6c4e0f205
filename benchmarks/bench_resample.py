"""Resample throughput (seconds of video per wall-second) beside a plain ffmpeg decode of the same files.

    python benchmarks/bench_resample.py [--copies 4]

Uses the real clips in ../shared/testdata. Prints one table; nothing is asserted.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTDATA = REPO.parent / "shared" / "testdata"


def plain_decode_seconds(src: Path) -> float:
    from preprocess.ffmpeg import run_ffmpeg

    start = time.perf_counter()
    run_ffmpeg(["-threads", "1", "-i", str(src), "-f", "null", "-"])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--copies", type=int, default=4, help="copies of each clip in the stage runs")
    parser.add_argument("--long-minutes", type=float, default=10.0,
                        help="length of the synthetic long video used for the memory figure (0: skip)")
    args = parser.parse_args()

    from preprocess.probe import probe
    from preprocess.resample.convert import ResampleParams, resample_video

    clips = sorted((TESTDATA / "grid").glob("*.mpg")) + sorted((TESTDATA / "cremad").glob("*.flv"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"{'clip':<24}{'video s':>8}{'decode s':>10}{'resample s':>12}{'ratio':>7}  path")
        totals = {"grid": [0.0, 0.0, 0.0], "cremad": [0.0, 0.0, 0.0]}
        for clip in clips:
            duration = probe(clip).duration
            decode = min(plain_decode_seconds(clip) for _ in range(3))
            times = []
            for _ in range(3):
                start = time.perf_counter()
                details = resample_video(clip, tmp / "v.mkv", tmp / "a.wav", ResampleParams())
                times.append(time.perf_counter() - start)
            resample = min(times)
            path = "copy" if details["video_copied"] else "re-encode"
            print(f"{clip.name:<24}{duration:>8.2f}{decode:>10.3f}{resample:>12.3f}{resample / decode:>7.2f}  {path}")
            bucket = totals[clip.parent.name]
            bucket[0] += duration
            bucket[1] += decode
            bucket[2] += resample
        for name, (dur, dec, res) in totals.items():
            print(f"{name}: plain decode {dur / dec:.1f} s/s, resample {dur / res:.1f} s/s (one core), "
                  f"resample/decode cost ratio {res / dec:.2f}")

        # The whole stage on dask (cluster start-up excluded), on `copies` copies of every clip.
        root = tmp / "project"
        raw = root / "raw"
        raw.mkdir(parents=True)
        (root / "data_manifests").mkdir()
        shutil.copy(REPO / "params.yaml", root / "params.yaml")
        for clip in clips:
            for i in range(args.copies):
                shutil.copy(clip, raw / f"{clip.stem}_{i}{clip.suffix}")
        os.environ["AVLIPS_ROOT"] = str(root)
        from pipeline.cluster import dask_client
        from pipeline.registry import add_corpus
        from pipeline import stages
        from preprocess.resample import stage as resample

        _, manifest = add_corpus("bench", str(raw), pattern="*.*", role="pretrain", label="real")
        seconds = float(manifest.duration.sum())
        for workers in (1, 2):
            shutil.rmtree(root / "data", ignore_errors=True)
            with dask_client(workers=workers) as client:
                client.wait_for_workers(workers)
                start = time.perf_counter()
                stages.run("resample", "bench", client)
                wall = time.perf_counter() - start
            print(f"stage, {workers} worker(s): {len(manifest)} videos, {seconds:.0f} s of video in {wall:.2f} s "
                  f"= {seconds / wall:.1f} s of video per wall-second")
    if args.long_minutes:
        long_video_memory(args.long_minutes)


def long_video_memory(minutes: float) -> None:
    """Peak memory of resampling one long 29.97 fps video: it must not grow with the video's length."""
    import resource

    from preprocess.ffmpeg import run_ffmpeg
    from preprocess.resample.convert import ResampleParams, resample_video

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "long.mp4"
        seconds = minutes * 60
        run_ffmpeg(["-f", "lavfi", "-i", f"testsrc2=size=320x240:rate=30000/1001:duration={seconds}",
                    "-f", "lavfi", "-i", f"sine=frequency=300:sample_rate=48000:duration={seconds}",
                    "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(src)])
        before_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        details = resample_video(src, Path(tmp) / "v.mkv", Path(tmp) / "a.wav", ResampleParams())
        wall = time.perf_counter() - start
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        after_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"long video: {minutes:.0f} min, {details['n_frames']} frames, {wall:.1f} s "
              f"({seconds / wall:.0f} s of video/s); peak RSS python {after_self / 1024:.0f} MiB "
              f"(+{(after_self - before_self) / 1024:.0f} MiB during the run), ffmpeg children {children / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
