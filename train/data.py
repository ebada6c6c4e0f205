"""WebDataset loading of crop-stage shards into synchronised (video window, audio window) batches.

Takes a list of shards with their sample counts (from the collect stage's index, or anything else).
Training: shards shuffled with a per-epoch seed and dealt to the readers (rank x worker); each reader
keeps `open_shards` of its shards open at once and draws its next clip uniformly from all the clips
those shards have left (local shards are read by random access, in a fresh random order every epoch),
then through a `shuffle_buffer` of windows. The crop stage writes shards in video-id order (a speaker's
clips together); this is what makes a batch hold as many speakers as a uniformly random one (see
benchmarks/bench_mixing.py). A random 2 s window per clip, clip-level augmentation, and exactly
`batches_per_rank` batches on every rank and epoch, so DDP never waits on a rank that ran out of data.
Everything random is seeded from (seed, epoch, rank, worker): an epoch replays exactly.
"""
from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from preprocess.contract import SAMPLES_PER_FRAME
from preprocess.shardformat import SampleRef, decode_sample, iter_samples, read_ref, scan_shard
from train.augment import AugmentConfig, augment_clip, centre_clip



@dataclass(frozen=True)
class ShardInfo:
    path: str
    samples: int


@dataclass(frozen=True)
class LoaderConfig:
    window: int = 50            # frames per training clip (2 s at 25 fps)
    windows_per_clip: int = 8   # random windows cut from each clip per epoch (one decode serves them all)
    batch_size: int = 8         # per rank
    num_workers: int = 1        # loader processes per rank, kept alive across epochs
    min_frames: int = 100       # shorter clips are not used (paper: "more than 100 continuous frames")
    open_shards: int = 16       # shards each reader draws from at once (open: ~0.3 kB per clip of catalog)
    shuffle_buffer: int = 1000  # windows held per reader on top (a 50-frame 96x96 gray window + audio: 0.59 MB)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


def read_index(path: str | os.PathLike, role: str) -> list[ShardInfo]:
    """Shards of one role ("train", "val") from a collect-stage index:
    {"train": [{"path", "sha256", "samples"}, ...], ...}. Relative paths are relative to the working
    directory (the repository root under DVC)."""
    entries = json.loads(Path(path).read_text()).get(role, [])
    return [ShardInfo(str(e["path"]), int(e["samples"])) for e in entries if int(e["samples"]) > 0]


def usable(n_frames: int, has_audio: bool, cfg: LoaderConfig) -> bool:
    """Long enough for a window (and min_frames), and with real audio (a silent stand-in would be a
    false positive pair)."""
    return has_audio and n_frames >= max(cfg.window, cfg.min_frames)


def ref_usable(ref: SampleRef, cfg: LoaderConfig) -> bool:
    """usable() from the shard headers alone."""
    return usable(ref.n_frames, ref.has_audio, cfg)


def window_starts(n_frames: int, cfg: LoaderConfig, rng: np.random.Generator) -> list[int]:
    """windows_per_clip random starts of a training window, distinct while the clip has that many."""
    n_starts = n_frames - cfg.window + 1
    k = cfg.windows_per_clip
    if k == 1:
        return [int(rng.integers(0, n_starts))]
    return [int(s) for s in (rng.choice(n_starts, k, replace=False) if k <= n_starts else rng.integers(0, n_starts, k))]


def cut_window(video: np.ndarray, audio: np.ndarray, start: int, length: int):
    return video[start:start + length], audio[start * SAMPLES_PER_FRAME:(start + length) * SAMPLES_PER_FRAME]


def augmented_batch(items: list[tuple[str, np.ndarray, np.ndarray]], rng: np.random.Generator,
                    cfg: AugmentConfig) -> dict:
    """Augment each clip straight into its row of the batch array (no per-clip tensors to stack)."""
    video = np.empty((len(items), len(items[0][1]), cfg.crop, cfg.crop), np.float32)
    for row, (_, clip, _) in zip(video, items):
        augment_clip(clip, rng, cfg, out=row)
    return {"key": [k for k, _, _ in items], "video": torch.from_numpy(video),
            "audio": torch.from_numpy(np.stack([a for _, _, a in items]))}


class SharedEpoch:
    """The epoch as a value in shared memory: loader workers persist across epochs and keep the copy of
    the dataset they were started with, so a plain attribute set after their start would not reach them."""

    def __init__(self, epoch: int = 0):
        self.value = multiprocessing.get_context("spawn").Value("q", epoch, lock=False)

    def set(self, epoch: int) -> None:
        self.value.value = epoch

    def get(self) -> int:
        return int(self.value.value)


class _OpenShard:
    """A shard being read by one reader: the clips it still has for this reader."""

    def __init__(self, shard: ShardInfo, keep, rng: np.random.Generator, cfg: LoaderConfig):
        self.path = shard.path
        self.local = os.path.isfile(shard.path)
        if self.local:  # random access, in a random order; unusable clips are skipped without reading them
            refs = [r for r in scan_shard(shard.path) if ref_usable(r, cfg)]
            refs = [r for j, r in enumerate(refs) if keep(j)]  # j: the clip's place among the usable ones
            self.refs = [refs[i] for i in rng.permutation(len(refs))]
            self.file = open(shard.path, "rb") if refs else None  # noqa: SIM115 (closed when drained)
            self.left = len(self.refs)
        else:  # a URL or pipe: streamed in order, filtered as read
            self.stream = (s for j, s in enumerate(iter_samples([shard.path])) if keep(j))
            self.left = max(1, shard.samples)  # an estimate, only used to weigh the shards

    def next(self) -> dict | None:
        if self.local:
            if not self.refs:
                return None
            sample = read_ref(self.file, self.path, self.refs.pop())
            self.left -= 1
            if not self.refs:
                self.file.close()
            return sample
        sample = next(self.stream, None)
        self.left = 0 if sample is None else max(1, self.left - 1)
        return sample


class EpochBatches(IterableDataset):
    """An iterable of whole batches, `batches_per_rank` per rank and epoch, split over the DataLoader's
    workers; the epoch lives in shared memory so workers that persist across epochs see set_epoch."""

    rank: int
    world: int
    batches_per_rank: int

    def __init__(self):
        self._epoch = SharedEpoch()

    @property
    def epoch(self) -> int:
        return self._epoch.get()

    def set_epoch(self, epoch: int) -> None:
        self._epoch.set(epoch)

    def _slot(self) -> tuple[int, int, int]:
        """(this reader's index, readers in all, batches it makes this epoch)."""
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        quota = self.batches_per_rank // nw + (wid < self.batches_per_rank % nw)
        return self.rank * nw + wid, self.world * nw, quota


class TrainWindows(EpochBatches):
    """Yields whole batches {"key": [key@start], "video": (B, window, crop, crop), "audio": (B, window * 640)}.

    Usable clips: with audio and at least max(window, min_frames) frames. Every reader (rank x worker) takes
    its clips from every shard, dealt by their place in the epoch's order (see _owner), and cuts
    `windows_per_clip` windows from each, so each epoch reads every clip once and uses
    batches_per_rank x world x batch_size of its windows: all of them but fewer than world x batch_size left
    over, which ones changing with the epoch. Only a corpus smaller than one global batch repeats clips (a
    reader then starts another pass over its share, in a new order).
    """

    def __init__(self, shards: list[ShardInfo], cfg: LoaderConfig, seed: int = 0, rank: int = 0,
                 world: int = 1):
        if not shards:
            raise ValueError("no training shards (is the shard index empty for this role?)")
        super().__init__()
        self.shards, self.cfg, self.seed, self.rank, self.world = list(shards), cfg, seed, rank, world
        # usable clips per shard: exact for local shards (headers scanned), the index's count otherwise
        self.counts = [sum(ref_usable(r, cfg) for r in scan_shard(s.path)) if os.path.isfile(s.path) else s.samples
                       for s in self.shards]
        self.total = total = sum(self.counts)
        self.dropped = sum(s.samples for s in self.shards) - total if all(
            os.path.isfile(s.path) for s in self.shards) else 0
        if total == 0:
            raise ValueError(f"no training clip has audio and at least max(window {cfg.window}, min_frames "
                             f"{cfg.min_frames}) frames in {len(self.shards)} shards")
        if cfg.windows_per_clip < 1:
            raise ValueError(f"pretrain.data.windows_per_clip must be at least 1, got {cfg.windows_per_clip}")
        self.windows = total * cfg.windows_per_clip
        # Every rank yields this many batches per epoch, whatever its shards hold (repeats if short).
        self.batches_per_rank = max(1, self.windows // (world * cfg.batch_size))

    def _owner(self, i: int, nw: int) -> int:
        """The reader of the clip with index i in the epoch's order. Clip i goes to batch slot i mod Nb
        (Nb = the epoch's batches over all ranks; slot n: rank n mod world, that rank's batch n // world,
        made by its worker (n // world) mod nw, as the DataLoader takes batches from workers in turn), so
        each reader gets exactly the clips its quota of batches needs, spread over every shard."""
        n = i % (self.batches_per_rank * self.world)
        return (n % self.world) * nw + (n // self.world) % nw

    def _clips(self, slot: int, nw: int, epoch: int, rng: np.random.Generator) -> Iterator[tuple]:
        # the same shard order on every rank and worker: a function of (seed, epoch) only
        perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.shards))
        offsets = np.concatenate([[0], np.cumsum([self.counts[i] for i in perm])])
        share = [(self.shards[i], int(offsets[n])) for n, i in enumerate(perm)]
        n_pass = 0
        while True:
            kept = 0
            order = share if n_pass == 0 else [share[i] for i in rng.permutation(len(share))]
            pending = iter(order)
            opened: list[_OpenShard] = []
            while True:
                while len(opened) < max(1, self.cfg.open_shards):
                    nxt = next(pending, None)
                    if nxt is None:
                        break
                    shard, offset = nxt
                    opened.append(_OpenShard(shard, lambda j, o=offset: self._owner(o + j, nw) == slot, rng,
                                             self.cfg))
                opened = [o for o in opened if o.left > 0]
                if not opened:
                    break
                # uniform over the clips the open shards have left for this reader
                weights = np.array([o.left for o in opened], np.float64)
                pick = opened[int(rng.choice(len(opened), p=weights / weights.sum()))]
                sample = pick.next()
                if sample is None:
                    continue
                key, video, audio, meta = decode_sample(sample)
                if not usable(len(video), meta.get("has_audio", True) is not False, self.cfg):
                    continue  # only streamed shards get here
                kept += 1
                for start in window_starts(len(video), self.cfg, rng):
                    v, a = cut_window(video, audio, start, self.cfg.window)
                    # copies: a window held in the buffer must not keep its whole clip's buffers alive
                    yield f"{key}@{start}", v.copy(), a.copy()
            if kept == 0:
                raise RuntimeError(f"rank {self.rank} reader {slot} found no clip with audio and >= "
                                   f"{max(self.cfg.window, self.cfg.min_frames)} frames in {len(share)} shards")
            n_pass += 1

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        epoch = self.epoch  # read when the epoch's iteration starts (after set_epoch, in every worker)
        slot, slots, quota = self._slot()
        rng = np.random.default_rng([self.seed, epoch, slot, 1])
        # a buffer larger than this reader's share of the corpus would only re-read it to fill up
        size = max(1, min(self.cfg.shuffle_buffer, self.windows // slots))
        buffer: list = []
        batch: list = []
        windows = self._clips(slot, slots // self.world, epoch, rng)
        produced, needed = 0, quota * self.cfg.batch_size
        while produced < quota:
            # filled only with clips this epoch will use: reading past the share would start a second pass
            while len(buffer) < min(size, needed):
                buffer.append(next(windows))
            needed -= 1
            # swap-remove: O(1), and as random as pop(i)
            i = int(rng.integers(len(buffer)))
            buffer[i], buffer[-1] = buffer[-1], buffer[i]
            batch.append(buffer.pop())
            if len(batch) == self.cfg.batch_size:
                yield augmented_batch(batch, rng, self.cfg.augment)
                batch, produced = [], produced + 1


def train_loader(shards: list[ShardInfo], cfg: LoaderConfig, seed: int, rank: int, world: int,
                 pin_memory: bool = False) -> tuple[DataLoader, TrainWindows]:
    ds = TrainWindows(shards, cfg, seed, rank, world)
    workers = min(cfg.num_workers, ds.batches_per_rank)  # idle workers would only cost start-up time
    # spawn, not fork: forking a process that already runs torch threads (or CUDA) is unsafe.
    # persistent: workers live across epochs (no seconds of start-up per epoch); set_epoch reaches
    # them through shared memory. generator: the workers' base seed, drawn when the loader makes its iterator
    # (for persistent workers once, at the first epoch a process runs), comes from a generator of its own;
    # from the global one it would shift the dropout of the epoch a resumed run starts at. The windows'
    # randomness is TrainWindows' own.
    loader = DataLoader(ds, batch_size=None, num_workers=workers, pin_memory=pin_memory,
                        multiprocessing_context="spawn" if workers else None, persistent_workers=workers > 0,
                        generator=torch.Generator().manual_seed(seed))
    return loader, ds


def eval_windows(shards: list[ShardInfo], cfg: LoaderConfig, limit: int | None = None,
                 starts: tuple[str | int, ...] = ("centre",)) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
    """Deterministic evaluation windows: for each clip (in shard order, up to `limit` windows) one window
    per entry of `starts` ("centre" or a frame offset), centre-cropped, not augmented.
    Yields (key@start, video (window, crop, crop), audio (window * 640,))."""
    n = 0
    for sample in iter_samples([s.path for s in shards]):
        key, video, audio, meta = decode_sample(sample)
        if not usable(len(video), meta.get("has_audio", True) is not False, cfg):
            continue
        for s in starts:
            start = (len(video) - cfg.window) // 2 if s == "centre" else int(s)
            if start + cfg.window > len(video):
                continue
            v, a = cut_window(video, audio, start, cfg.window)
            yield f"{key}@{start}", centre_clip(v, cfg.augment), torch.from_numpy(a.copy())
            n += 1
            if limit is not None and n >= limit:
                return
