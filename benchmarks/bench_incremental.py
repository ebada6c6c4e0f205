"""Incremental crop: time of the crop stage for a corpus of N videos, then again after adding one video (which
must render only that one); and the bytes on disk per hour of video of the align stage's output.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_incremental.py [--videos 50] [--base-align DIR]

The corpus is the shared GRID clips (3 s each) linked under N different names, run through resample, track
(RetinaFace) and align (dlib) first; stages run on an in-process dask client with one worker thread.
`--base-align` names an align folder written before the crop stage rendered the mouths (per-video .npz files
with crops and audio), for the before/after bytes per hour.
"""
from __future__ import annotations

import argparse
import atexit
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def align_bytes_per_hour(folder: Path) -> tuple[float, int, int]:
    """(bytes per hour of aligned video, bytes, frames) over every .npz under `folder`."""
    total = frames = 0
    for npz in sorted(Path(folder).rglob("*.npz")):
        total += npz.stat().st_size
        with np.load(npz, allow_pickle=False) as data:
            frames += len(data["frame"])
    return total / (frames / 25 / 3600), total, frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=50, help="videos in the corpus before the addition")
    parser.add_argument("--base-align", type=Path, default=Path("/tmp/base/out/align"),
                        help="an align folder from before the change (skipped when absent)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    import pipeline_project as h
    from pipeline import stages
    from pipeline.corpora import get_corpus, load_params
    from pipeline.manifest import scan_corpus, write_manifest

    clips = h.benchmark_clips()
    root = Path(tempfile.mkdtemp(prefix="avlips-bench-incr-")) / "project"
    atexit.register(shutil.rmtree, root.parent, ignore_errors=True)
    raw = root / "raw" / "grid"
    raw.mkdir(parents=True)
    for i in range(args.videos):
        clip = clips.grid[i % len(clips.grid)]
        (raw / f"v{i:03d}_{clip.name}").symlink_to(clip)
    (root / "params.yaml").write_text(h.project_params(clips).replace("maxcount: 4", "maxcount: 1000"))
    (root / "data_manifests").mkdir()
    seconds = {}
    with h.project_env(root), h.local_client() as client:
        def rescan():
            write_manifest(scan_corpus(get_corpus("gridt", load_params())), root / "data_manifests" / "gridt.parquet")

        def run(label: str) -> list:
            for stage in ("resample", "track", "align"):
                stages.run(stage, "gridt", client)
            start = time.perf_counter()
            records = stages.run("crop", "gridt", client)
            seconds[label] = time.perf_counter() - start
            return records

        rescan()
        first = run("full")
        clip = clips.grid[0]
        (raw / f"zz_added_{clip.name}").symlink_to(clip)
        rescan()
        timings = root / "logs" / "timings" / "crop@gridt.parquet"
        timings.unlink()
        second = run("added")
        import pandas as pd

        rendered = pd.read_parquet(timings).video_id.tolist()
    ok = sum(r.status == "ok" for r in first), sum(r.status == "ok" for r in second)
    print(f"crop stage, {args.videos} videos ({ok[0]} ok), all rendered: {seconds['full']:.2f} s")
    print(f"crop stage after adding 1 video ({ok[1]} ok; rendered now: {len(rendered)} video): "
          f"{seconds['added']:.2f} s")
    print(f"ratio added/full: {seconds['added'] / seconds['full']:.3f}")
    after, size, frames = align_bytes_per_hour(root / "data" / "align")
    print(f"data/align after:  {after / 1e9:.3f} GB per hour of video ({size} bytes, {frames} frames)")
    if args.base_align.exists():
        before, size, frames = align_bytes_per_hour(args.base_align)
        print(f"data/align before: {before / 1e9:.3f} GB per hour of video ({size} bytes, {frames} frames, "
              f"{args.base_align})")
        print(f"ratio after/before: {after / before:.3f}")


if __name__ == "__main__":
    main()
