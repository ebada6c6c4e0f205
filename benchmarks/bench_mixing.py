"""How mixed are the pretraining batches? Distinct speakers and videos per batch, beside uniform sampling.

    python benchmarks/bench_mixing.py [--speakers 500 --videos 4 --segments 5 --shard 1000 --workers 4 --batch 32]

A synthetic corpus shaped like VoxCeleb2 (default: 500 speakers x 20 clips = 4 videos x 5 segments each),
written in id order into shards of 1,000 clips, as the crop stage writes them (a speaker's clips together).
The clips are tiny (2 frames of 16x16, silence) so that only the order of reading is measured. Batches come
from the real DataLoader with its worker processes. "uniform" is the expectation for a batch drawn
uniformly without replacement from the whole corpus. Runs against any checkout's train.data (PYTHONPATH),
so the same script measures the loader before and after a change. Nothing is asserted (tests/test_mixing.py
asserts on a smaller corpus).
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import tempfile
from pathlib import Path

import numpy as np


def clip_key(speaker: int, video: int, segment: int) -> str:
    return f"spk{speaker:05d}__vid{speaker:05d}x{video:02d}__{segment:02d}"


def write_corpus(out_dir: Path, speakers: int, videos: int, segments: int, shard_size: int,
                 frames: int = 2, side: int = 16) -> list:
    """Shards of `shard_size` tiny clips in id order -> [ShardInfo]."""
    import webdataset as wds

    from train.data import ShardInfo

    def npy(a) -> bytes:
        buf = io.BytesIO()
        np.save(buf, a, allow_pickle=False)
        return buf.getvalue()

    video, audio = npy(np.zeros((frames, side, side), np.uint8)), npy(np.zeros((frames, 640), np.float32))
    meta = json.dumps({"has_audio": True}).encode()
    keys = [clip_key(s, v, g) for s in range(speakers) for v in range(videos) for g in range(segments)]
    out_dir.mkdir(parents=True, exist_ok=True)
    shards = []
    for i in range(0, len(keys), shard_size):
        path = out_dir / f"train-{i // shard_size:06d}.tar"
        with wds.TarWriter(str(path)) as w:
            for key in keys[i:i + shard_size]:
                w.write({"__key__": key, "video.npy": video, "audio.npy": audio, "json": meta})
        shards.append(ShardInfo(str(path), len(keys[i:i + shard_size])))
    return shards


def expected_distinct(group_sizes: list[int], batch: int) -> float:
    """Mean number of distinct groups in `batch` items drawn uniformly without replacement from all items:
    sum over groups of P(the group is hit) = 1 - C(N - n, B) / C(N, B)."""
    n_all = sum(group_sizes)

    def log_comb(n: int, k: int) -> float:
        return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) if 0 <= k <= n else -math.inf

    return sum(1 - math.exp(log_comb(n_all - n, batch) - log_comb(n_all, batch)) for n in group_sizes)


def loader_config(batch: int, workers: int, frames: int = 2, side: int = 16):
    """The params' loader settings (whatever this checkout's LoaderConfig has), sized to the tiny clips."""
    from train.augment import AugmentConfig
    from train.data import LoaderConfig

    names = {f.name for f in dataclasses.fields(LoaderConfig)}
    extra = {"min_frames": frames} if "min_frames" in names else {}
    return LoaderConfig(window=frames, windows_per_clip=1, batch_size=batch, num_workers=workers,
                        augment=AugmentConfig(crop=side - 2, blur_prob=0, noise_prob=0, brightness=0), **extra)


def batch_mixing(shards: list, cfg, epochs: int = 1, world: int = 1) -> dict:
    """Mean distinct speakers and videos per batch over `epochs` epochs of every rank's loader."""
    from train.data import train_loader

    speakers, videos = [], []
    for rank in range(world):
        loader, ds = train_loader(shards, cfg, seed=0, rank=rank, world=world)
        for epoch in range(epochs):
            ds.set_epoch(epoch)
            for b in loader:
                keys = [k.rsplit("@", 1)[0].split("__") for k in b["key"]]
                speakers.append(len({k[0] for k in keys}))
                videos.append(len({k[1] for k in keys}))
    return {"batches": len(speakers), "speakers": float(np.mean(speakers)), "videos": float(np.mean(videos))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--speakers", type=int, default=500)
    p.add_argument("--videos", type=int, default=4, help="videos per speaker")
    p.add_argument("--segments", type=int, default=5, help="clips per video")
    p.add_argument("--shard", type=int, default=1000, help="clips per shard")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--epochs", type=int, default=2)
    a = p.parse_args()

    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        shards = write_corpus(Path(tmp), a.speakers, a.videos, a.segments, a.shard)
        cfg = loader_config(a.batch, a.workers)
        got = batch_mixing(shards, cfg, a.epochs)
    per_speaker = a.videos * a.segments
    uni_s = expected_distinct([per_speaker] * a.speakers, a.batch)
    uni_v = expected_distinct([a.segments] * (a.speakers * a.videos), a.batch)
    print(f"{a.speakers} speakers x {a.videos} videos x {a.segments} clips in {len(shards)} shards of {a.shard} "
          f"(id order), {a.workers} workers, batch {a.batch}, {got['batches']} batches over {a.epochs} epochs; "
          f"loader {json.dumps({k: v for k, v in dataclasses.asdict(cfg).items() if k != 'augment'})}")
    print(f"distinct speakers per batch: {got['speakers']:.2f} (uniform random: {uni_s:.2f}, "
          f"ratio {got['speakers'] / uni_s:.3f})")
    print(f"distinct videos per batch:   {got['videos']:.2f} (uniform random: {uni_v:.2f}, "
          f"ratio {got['videos'] / uni_v:.3f})")


if __name__ == "__main__":
    main()
