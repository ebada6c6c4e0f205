"""Pretraining loader throughput: augmented 2 s (video, audio) pairs per second, per worker process.

    dvc repro collect                      # shards of the default corpora (or any collect index)
    python benchmarks/bench_loader.py [--index data/collect/pretrain.json] [--batches 30]
    PYTHONPATH=/path/to/other/checkout python benchmarks/bench_loader.py ...   # that checkout's loader

One worker process is the unit that scales: the figure "in process" is what each DataLoader worker
delivers; the DataLoader rows add inter-process transfer. Nothing is asserted.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path


def pairs_per_second(iterable, batch_size: int) -> float:
    """Run one whole epoch (abandoning a DataLoader mid-epoch aborts its workers); time all but the first
    batch, which pays for start-up (worker spawn, first shard open)."""
    it = iter(iterable)
    next(it)
    start = time.perf_counter()
    batches = sum(1 for _ in it)
    return batches * batch_size / (time.perf_counter() - start)


def repeated_corpus(shards: list, clips: int, shard_size: int, out_dir: Path) -> list:
    """The shards' samples repeated under new keys (`<key>r<copy>`) until `clips`, in shards of `shard_size`:
    an epoch of real clips as long as wanted, with honest sample counts."""
    import webdataset as wds

    from preprocess.shardformat import iter_samples
    from train.data import ShardInfo

    samples = [{k: bytes(v) if isinstance(v, (bytes, bytearray)) else v for k, v in s.items() if k != "__url__"}
               for s in iter_samples([s.path for s in shards])]
    out = []
    for start in range(0, clips, shard_size):
        path = out_dir / f"train-{start // shard_size:06d}.tar"
        n = min(shard_size, clips - start)
        with wds.TarWriter(str(path)) as w:
            for i in range(start, start + n):
                sample = samples[i % len(samples)]
                w.write({**sample, "__key__": f"{sample['__key__']}r{i // len(samples)}"})
        out.append(ShardInfo(str(path), n))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", default="data/collect/pretrain.json")
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--shard-size", type=int, default=100, help="clips per shard of the repeated corpus")
    args = parser.parse_args()

    import dataclasses
    import tempfile

    import torch

    from train.data import LoaderConfig, TrainWindows, read_index, train_loader

    torch.set_num_threads(1)
    source = read_index(args.index, "train") + read_index(args.index, "val")
    # min_frames (where this checkout has it) lowered to the 75-frame GRID clips of the demo corpus
    extra = {"min_frames": 50} if "min_frames" in {f.name for f in dataclasses.fields(LoaderConfig)} else {}
    cfg = LoaderConfig(batch_size=args.batch_size, **extra)
    with tempfile.TemporaryDirectory() as tmp:
        # one epoch of `batches + 1` batches of real clips (the demo clips repeated under new keys)
        shards = repeated_corpus(source, (args.batches + 1) * args.batch_size, args.shard_size, Path(tmp))
        print(f"{len(shards)} shards of up to {args.shard_size} clips, batch {cfg.batch_size}, window {cfg.window} "
              f"frames, crop {cfg.augment.crop}; loader "
              + ", ".join(f"{k} {v}" for k, v in dataclasses.asdict(cfg).items() if k != "augment"))
        rate = pairs_per_second(TrainWindows(shards, cfg), cfg.batch_size)
        print(f"in process (one worker's work): {rate:.0f} augmented pairs/s")
        for workers in (1, 2):
            loader, _ = train_loader(shards, dataclasses.replace(cfg, num_workers=workers), seed=0, rank=0, world=1)
            rate = pairs_per_second(loader, cfg.batch_size)
            print(f"DataLoader, {workers} worker process(es): {rate:.0f} pairs/s ({rate / workers:.0f} per worker)")


if __name__ == "__main__":
    main()
