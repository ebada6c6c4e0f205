"""Pretraining loader throughput: augmented 2 s (video, audio) pairs per second, per worker process.

    dvc repro collect                      # shards of the default corpora (or any collect index)
    python benchmarks/bench_loader.py [--index data/collect/pretrain.json] [--batches 30]

One worker process is the unit that scales: the figure "in process" is what each DataLoader worker
delivers; the DataLoader rows add inter-process transfer. Nothing is asserted.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace


def pairs_per_second(iterable, batch_size: int) -> float:
    """Run one whole epoch (abandoning a DataLoader mid-epoch aborts its workers); time all but the first
    batch, which pays for start-up (worker spawn, first shard open)."""
    it = iter(iterable)
    next(it)
    start = time.perf_counter()
    batches = sum(1 for _ in it)
    return batches * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", default="data/collect/pretrain.json")
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import torch

    from train.data import LoaderConfig, ShardInfo, TrainWindows, read_index, train_loader

    torch.set_num_threads(1)
    shards = read_index(args.index, "train") + read_index(args.index, "val")
    # Pretend the shards hold one epoch of `batches + 1` batches: the readers cycle through the demo clips.
    per_shard = -(-(args.batches + 1) * args.batch_size // len(shards))
    shards = [ShardInfo(s.path, per_shard) for s in shards]
    cfg = LoaderConfig(batch_size=args.batch_size)
    print(f"{len(shards)} shards, batch {cfg.batch_size}, window {cfg.window} frames, crop {cfg.augment.crop}")
    rate = pairs_per_second(TrainWindows(shards, cfg), cfg.batch_size)
    print(f"in process (one worker's work): {rate:.0f} augmented pairs/s")
    for workers in (1, 2):
        loader, _ = train_loader(shards, replace(cfg, num_workers=workers), seed=0, rank=0, world=1)
        rate = pairs_per_second(loader, cfg.batch_size)
        print(f"DataLoader, {workers} worker process(es): {rate:.0f} pairs/s ({rate / workers:.0f} per worker)")


if __name__ == "__main__":
    main()
