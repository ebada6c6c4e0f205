"""Labelled 1 s training clips for fine-tuning, streamed from crop-stage shards, with class balancing.

A `ClipSource` is one shard and how many copies per epoch each of its samples gets, by label (1: as is;
0.5: each sample with probability 0.5, drawn again every epoch; 2.5: twice, a third time with probability
0.5). Every copy gives `clips_per_sample` random windows of `clip` frames, each augmented as in pretraining
(one draw per clip). Fakes of excluded methods are skipped (leave-one-method-out).

As train/data.py does for pretraining: shards shuffled per epoch from the seed, each (rank, worker) reads its
own shards (or every slots-th sample when there are fewer shards than readers), and every rank yields
exactly `batches_per_rank` batches per epoch, so DDP never waits on a rank that ran out of data.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from preprocess.shardformat import decode_sample, iter_samples
from train.augment import AugmentConfig, augment_clip
from train.data import EpochBatches

BALANCE = ("pretrain_reals", "oversample", "none")


@dataclass(frozen=True)
class ClipSource:
    path: str
    samples: int
    weights: tuple[tuple[str, float], ...]   # (label, copies per epoch); a label not listed is skipped

    def weight(self, label: str) -> float:
        return dict(self.weights).get(label, 0.0)


@dataclass(frozen=True)
class ClipLoaderConfig:
    """The loader's share of the finetune section (train/finetune.py fills every field: no second defaults)."""
    clip: int
    clips_per_sample: int
    batch_size: int
    num_workers: int
    shuffle_buffer: int
    augment: AugmentConfig


@dataclass(frozen=True)
class BalancePlan:
    sources: tuple[ClipSource, ...]
    counts: dict                              # samples per class before and after balancing, for the log
    note: str


def _kept_counts(entry: dict, exclude_methods: tuple[str, ...]) -> tuple[int, int]:
    """(real, fake) samples of a collect-index entry, fakes of excluded methods left out."""
    labels, methods = entry.get("labels") or {}, entry.get("methods") or {}
    fake = int(labels.get("fake", 0)) - sum(int(methods.get(m, 0)) for m in exclude_methods)
    return int(labels.get("real", 0)), max(fake, 0)


def plan_balance(finetune: list[dict], pretrain: list[dict], balance: str,
                 exclude_methods: tuple[str, ...] = ()) -> BalancePlan:
    """Sources and copy weights for a balance mode from collect-index entries (finetune and pretrain train
    splits): `none` as is; `oversample` repeats the smaller class to the size of the larger; `pretrain_reals`
    (the paper) adds real samples drawn from the pretraining corpora until reals match fakes."""
    if balance not in BALANCE:
        raise ValueError(f"finetune.balance must be one of {BALANCE}, got {balance!r}")
    n_real = sum(_kept_counts(e, exclude_methods)[0] for e in finetune)
    n_fake = sum(_kept_counts(e, exclude_methods)[1] for e in finetune)
    w_real, w_fake, extra, added, note = 1.0, 1.0, [], 0, "no balancing"
    if balance == "oversample" and n_real and n_fake:
        if n_real < n_fake:
            w_real = n_fake / n_real
        else:
            w_fake = n_real / n_fake
        note = f"oversampling: reals x{w_real:.3g}, fakes x{w_fake:.3g} per epoch"
    elif balance == "pretrain_reals":
        deficit = n_fake - n_real
        pool = sum(int((e.get("labels") or {}).get("real", 0)) for e in pretrain)
        if deficit <= 0:
            note = f"pretrain_reals: {n_real} reals already match {n_fake} fakes, none added"
        elif pool == 0:
            note = (f"pretrain_reals: {deficit} more reals needed but the pretraining corpora have no real "
                    "sample in their train split; training unbalanced")
        else:
            w = deficit / pool
            extra = [ClipSource(e["path"], int(e["samples"]), (("real", w),)) for e in pretrain]
            note = (f"pretrain_reals: {deficit} real samples per epoch drawn from {pool} pretraining samples"
                    + (f" (fewer than needed: each repeated x{w:.3g})" if w > 1 else ""))
            added = deficit
    weights = (("real", w_real), ("fake", w_fake))
    sources = [ClipSource(e["path"], int(e["samples"]), weights) for e in finetune] + extra
    counts = {"finetune_real": n_real, "finetune_fake": n_fake,
              "per_epoch_real": n_real * w_real + added, "per_epoch_fake": n_fake * w_fake}
    return BalancePlan(tuple(s for s in sources if s.samples > 0), counts, note)


def copies(weight: float, rng: np.random.Generator) -> int:
    whole = math.floor(weight)
    return whole + int(rng.random() < weight - whole)


class LabelledClips(EpochBatches):
    """Yields whole batches {"video": (B, clip, crop, crop) float32 normalised, "label": (B,) float32 1=fake}."""

    def __init__(self, sources: list[ClipSource], cfg: ClipLoaderConfig, exclude_methods: tuple[str, ...] = (),
                 seed: int = 0, rank: int = 0, world: int = 1, expected_samples: float | None = None):
        if not sources:
            raise ValueError("no training shards for fine-tuning (no finetune corpus in the collect index?)")
        super().__init__()
        self.sources, self.cfg, self.exclude = list(sources), cfg, tuple(exclude_methods)
        self.seed, self.rank, self.world = seed, rank, world
        total = expected_samples if expected_samples is not None else sum(s.samples for s in sources)
        self.total_clips = total * cfg.clips_per_sample
        self.batches_per_rank = max(1, int(self.total_clips // (world * cfg.batch_size)))

    def _clips(self, slot: int, slots: int, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, float]]:
        perm = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.sources))
        order = [self.sources[i] for i in perm]
        by_shard = len(order) >= slots
        mine = order[slot::slots] if by_shard else order
        n_pass = 0
        while True:
            kept = 0
            srcs = mine if n_pass == 0 else [mine[i] for i in rng.permutation(len(mine))]
            for src in srcs:
                for i, sample in enumerate(iter_samples([src.path])):
                    if not by_shard and i % slots != slot:
                        continue
                    _, video, _, meta = decode_sample(sample)
                    label = str(meta.get("label"))
                    if len(video) < self.cfg.clip or (label == "fake" and meta.get("method") in self.exclude):
                        continue
                    for _ in range(copies(src.weight(label), rng) * self.cfg.clips_per_sample):
                        start = int(rng.integers(0, len(video) - self.cfg.clip + 1))
                        kept += 1
                        yield video[start:start + self.cfg.clip], 1.0 if label == "fake" else 0.0
            if kept == 0 and n_pass > 0:  # one empty pass can be bad luck with fractional weights
                raise RuntimeError(f"fine-tuning reader {slot} of rank {self.rank} found no labelled sample of "
                                   f">= {self.cfg.clip} frames in {len(mine)} shards")
            n_pass += 1

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        slot, slots, quota = self._slot()
        rng = np.random.default_rng([self.seed, self.epoch, slot, 2])
        size = max(1, min(self.cfg.shuffle_buffer, int(self.total_clips // slots) or 1))
        clips = self._clips(slot, slots, rng)
        buffer: list = []
        produced = 0
        while produced < quota:
            while len(buffer) < size:
                buffer.append(next(clips))
            batch = [buffer.pop(int(rng.integers(len(buffer)))) for _ in range(min(self.cfg.batch_size, size))]
            while len(batch) < self.cfg.batch_size:  # a buffer smaller than a batch: refill as we go
                buffer.append(next(clips))
                batch.append(buffer.pop(int(rng.integers(len(buffer)))))
            video = np.empty((len(batch), self.cfg.clip, self.cfg.augment.crop, self.cfg.augment.crop), np.float32)
            for row, (clip, _) in zip(video, batch):
                augment_clip(clip, rng, self.cfg.augment, out=row)
            yield {"video": torch.from_numpy(video),
                   "label": torch.tensor([lab for _, lab in batch], dtype=torch.float32)}
            produced += 1


def clip_loader(ds: LabelledClips, pin_memory: bool = False) -> DataLoader:
    workers = min(ds.cfg.num_workers, ds.batches_per_rank)
    # persistent and with a generator of its own, like pretraining's loader (train.data.train_loader says why)
    return DataLoader(ds, batch_size=None, num_workers=workers, pin_memory=pin_memory,
                      multiprocessing_context="spawn" if workers else None, persistent_workers=workers > 0,
                      generator=torch.Generator().manual_seed(ds.seed))
