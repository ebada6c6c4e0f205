"""End-to-end preprocessing throughput on the shared clips (dlib path), and shard read speed.

    python benchmarks/bench_preprocess.py [--copies 3]

Runs resample -> track -> align -> crop in a scratch project on `--copies` copies (symlinks) of the
GRID and CREMA-D clips (RetinaFace weights from ../shared/weights), with one single-threaded dask worker
(one core for the Python work; ffmpeg and the PyAV decoder may use extra threads), and prints frames per
second per stage and end to end. Then reads every shard (decoding the .npy and json fields) two ways,
WebDataset's generic decoders and the training loader's path (train.data), and prints samples/s and
frames/s. Nothing is asserted.
"""
from __future__ import annotations

import argparse
import atexit
import glob
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--copies", type=int, default=3, help="copies of each clip")
    parser.add_argument("--read-passes", type=int, default=20, help="passes over the shards when timing reads")
    args = parser.parse_args()

    import pandas as pd

    import pipeline_project as h
    from pipeline.manifest import scan_corpus, write_manifest
    from pipeline.corpora import get_corpus, load_params
    from pipeline import stages

    real = h.benchmark_clips()
    root = Path(tempfile.mkdtemp(prefix="avlips-bench-")) / "project"
    atexit.register(shutil.rmtree, root.parent, ignore_errors=True)
    for sub, clips in (("grid", real.grid), ("cremad", real.cremad)):
        (root / "raw" / sub).mkdir(parents=True)
        for copy in range(args.copies):
            for clip in clips:
                (root / "raw" / sub / f"c{copy}_{clip.name}").symlink_to(clip)
    text = h.project_params(real).replace("maxcount: 4", "maxcount: 1000")
    (root / "params.yaml").write_text(text)
    (root / "data_manifests").mkdir()
    times = {}
    with h.project_env(root), h.local_client() as client:
        params = load_params()
        for name in ("gridt", "cremadt"):
            write_manifest(scan_corpus(get_corpus(name, params)), root / "data_manifests" / f"{name}.parquet")
        for step, fn in (("resample", lambda n: stages.run("resample", n, client)),
                         ("track", lambda n: stages.run("track", n, client)),
                         ("align", lambda n: stages.run("align", n, client)),
                         ("crop", lambda n: stages.run("crop", n, client))):
            start = time.perf_counter()
            for name in ("gridt", "cremadt"):
                fn(name)
            times[step] = time.perf_counter() - start
        manifests = (root / "data" / "shards").glob("*/manifest.parquet")
        frames = sum(int(pd.read_parquet(p).n_frames.sum()) for p in manifests)
    n_clips = len(real.grid) + len(real.cremad)
    print(f"\n{frames} frames in shards ({args.copies} copies of {n_clips} clips), one worker:")
    for step, seconds in times.items():
        print(f"  {step:<22} {seconds:7.2f} s  {frames / seconds:8.1f} frames/s")
    ours = sum(v for k, v in times.items() if not k.startswith("track"))
    print(f"  {'resample+align+crop':<22} {ours:7.2f} s  {frames / ours:8.1f} frames/s (without track)")
    total = sum(times.values())
    print(f"  {'end to end':<22} {total:7.2f} s  {frames / total:8.1f} frames/s (resample to shards)")

    urls = sorted(glob.glob(str(root / "data" / "shards" / "*" / "*.tar")))
    print(f"shard read, {frames} frames in {len(urls)} shards, {args.read_passes} passes:")
    for label, read in read_paths().items():
        print(f"  {label:<44} {read_speed(read, urls, args.read_passes)}")


def read_paths() -> dict:
    """The ways shards are read: WebDataset's generic decoders (what the benchmark timed first) and the
    training loader's own path (train.data: local tar reader, .npy viewed in place)."""
    import webdataset as wds

    from preprocess.shardformat import decode_sample, iter_samples

    def generic(urls):
        for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode():
            yield len(sample["video.npy"])

    def loader(urls):
        for sample in iter_samples(urls):
            yield len(decode_sample(sample)[1])

    return {"WebDataset .decode() (.npy + json)": generic, "train.data (iter_samples + decode_sample)": loader}


def read_speed(read, urls: list[str], passes: int) -> str:
    for _ in read(urls):  # one untimed pass: file cache and imports warm for every path alike
        pass
    samples = frames = 0
    start = time.perf_counter()
    for _ in range(passes):
        for n_frames in read(urls):
            samples += 1
            frames += n_frames
    seconds = time.perf_counter() - start
    return f"{samples / seconds:7.0f} samples/s {frames / seconds:9.0f} frames/s ({samples} samples)"

if __name__ == "__main__":
    main()
