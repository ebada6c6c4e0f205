"""WebDataset loading of crop-stage shards into synchronised (video window, audio window) batches.

Takes a list of shards with their sample counts (from the collect stage's index, or anything else).
Training: shards shuffled with a per-epoch seed, a random 2 s window per clip, clip-level augmentation,
and exactly `batches_per_rank` batches on every rank and epoch, so DDP never waits on a rank that ran
out of data. Everything random is seeded from (seed, epoch, rank, worker): an epoch replays exactly.
"""
from __future__ import annotations

import io
import json
import os
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from train.augment import AugmentConfig, augment_clip, centre_clip

SAMPLES_PER_FRAME = 640  # 16 kHz audio / 25 fps video


@dataclass(frozen=True)
class ShardInfo:
    path: str
    samples: int


@dataclass(frozen=True)
class LoaderConfig:
    window: int = 50            # frames per training clip (2 s at 25 fps)
    batch_size: int = 32        # per rank
    num_workers: int = 4
    shuffle_buffer: int = 256   # windows held per worker for sample-level shuffling
    augment: AugmentConfig = field(default_factory=AugmentConfig)


def read_index(path: str | os.PathLike, role: str) -> list[ShardInfo]:
    """Shards of one role ("train", "val") from a collect-stage index:
    {"train": [{"path", "sha256", "samples"}, ...], ...}. Relative paths are relative to the working
    directory (the repository root under DVC)."""
    entries = json.loads(Path(path).read_text()).get(role, [])
    return [ShardInfo(str(e["path"]), int(e["samples"])) for e in entries if int(e["samples"]) > 0]


# The header numpy writes for a C-order array of a plain dtype (what the crop stage writes), e.g.
# {'descr': '|u1', 'fortran_order': False, 'shape': (75, 96, 96), }
_NPY_HEADER = re.compile(r"\{'descr': '([<>|=]?[a-z]\d+)', 'fortran_order': False, 'shape': \(([\d, ]*)\), \}")
_NPY_MAGIC = b"\x93NUMPY\x01\x00"


def _load_npy(data: bytes | bytearray) -> np.ndarray:
    """A .npy member as an array viewing `data` (no copy; writable when `data` is a bytearray).

    np.load parses the header with ast.literal_eval and copies the payload: a third of the read time of a
    3 s sample. Headers of any other form (version 2/3, Fortran order, structured dtypes) go to np.load.
    """
    if bytes(data[:8]) == _NPY_MAGIC:
        end = 10 + int.from_bytes(data[8:10], "little")
        match = _NPY_HEADER.match(bytes(data[10:end]).decode("latin1"))
        if match:
            shape = tuple(int(n) for n in match.group(2).split(",") if n.strip())
            dtype = np.dtype(match.group(1))
            count = int(np.prod(shape, dtype=np.int64))
            if count and len(data) - end == count * dtype.itemsize:
                return np.frombuffer(data, dtype, count, offset=end).reshape(shape)
    return np.load(io.BytesIO(data), allow_pickle=False)


def decode_sample(sample: dict) -> tuple[str, np.ndarray, np.ndarray, dict]:
    """-> key, video uint8 (T, H, W) grayscale, audio float32 (T * 640,), json metadata."""
    key = sample["__key__"]
    missing = [k for k in ("video.npy", "audio.npy") if k not in sample]
    if missing:  # WebDataset cuts keys at the first dot: a dotted key loses its fields this way
        raise ValueError(f"sample {key!r} in {sample.get('__url__')} lacks {missing} "
                         f"(has {sorted(k for k in sample if not k.startswith('__'))}); dotted key?")
    video = _load_npy(sample["video.npy"])
    if video.ndim == 4 and video.shape[-1] == 3:  # crops packed in colour (align.color): the model is gray
        video = (video.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).round().astype(np.uint8)
    audio = _load_npy(sample["audio.npy"]).reshape(-1)
    if audio.dtype == np.int16:
        audio = audio.astype(np.float32) / 32768.0
    audio = audio.astype(np.float32, copy=False)
    if video.ndim != 3 or video.dtype != np.uint8 or len(audio) != len(video) * SAMPLES_PER_FRAME:
        raise ValueError(f"sample {key!r} breaks the shard contract: video {video.dtype}{video.shape}, "
                         f"audio {len(audio)} samples for {len(video)} frames (want 640 per frame)")
    meta = json.loads(sample["json"]) if "json" in sample else {}
    return key, video, audio, meta


def usable(video: np.ndarray, meta: dict, window: int) -> bool:
    """Long enough for a window, and with real audio (a silent stand-in would be a false positive pair)."""
    return len(video) >= window and meta.get("has_audio", True) is not False


def iter_samples(paths: list[str]) -> Iterator[dict]:
    """Raw samples of the shards, in order: {"__key__", "__url__", field: bytes-like}, as WebDataset groups them.

    Local files are read with random access (one read per member, straight into its own buffer);
    anything else (URLs, pipes) through WebDataset's streaming tar reader.
    """
    for path in paths:
        if os.path.isfile(path):
            yield from _local_tar_samples(path)
        else:
            yield from wds.tariterators.tarfile_samples([{"url": path}])


def _local_tar_samples(path: str) -> Iterator[dict]:
    """WebDataset's grouping (key = member name up to the first dot of its base name; meta members and
    non-files skipped) over a local tar. Reading each member with one readinto instead of WebDataset's
    stream mode (10 kB reads, joined and sliced) triples the read speed; the bytearray buffers make the
    arrays viewing them writable."""
    sample: dict | None = None
    with open(path, "rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
        for member in tar:
            name = member.name
            if not member.isreg() or ("/" not in name and name.startswith("__") and name.endswith("__")):
                continue
            prefix, suffix = wds.tariterators.base_plus_ext(name)
            if prefix is None:
                continue
            if sample is None or sample["__key__"] != prefix:
                if sample is not None:
                    yield sample
                sample = {"__key__": prefix, "__url__": path}
            suffix = suffix.lower()
            if suffix in sample:
                raise ValueError(f"{path}: {name} appears twice in sample {prefix!r}")
            data = bytearray(member.size)
            f.seek(member.offset_data)
            if f.readinto(data) != member.size:
                raise ValueError(f"{path}: member {name} is truncated")
            sample[suffix] = data
    if sample is not None:
        yield sample


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


class TrainWindows(IterableDataset):
    """Yields whole batches {"key": [key@start], "video": (B, window, crop, crop), "audio": (B, window * 640)}."""

    def __init__(self, shards: list[ShardInfo], cfg: LoaderConfig, seed: int = 0, rank: int = 0,
                 world: int = 1):
        if not shards:
            raise ValueError("no training shards (is the shard index empty for this role?)")
        self.shards, self.cfg, self.seed, self.rank, self.world = list(shards), cfg, seed, rank, world
        self.epoch = 0
        self.total = total = sum(s.samples for s in shards)
        # Every rank yields this many batches per epoch, whatever its shards hold (repeats if short).
        self.batches_per_rank = max(1, total // (world * cfg.batch_size))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _slot(self) -> tuple[int, int, int]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        quota = self.batches_per_rank // nw + (wid < self.batches_per_rank % nw)
        return self.rank * nw + wid, self.world * nw, quota

    def _windows(self, slot: int, slots: int, rng: np.random.Generator) -> Iterator[tuple]:
        # the same shard order on every rank and worker: a function of (seed, epoch) only
        perm = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.shards))
        order = [self.shards[i].path for i in perm]
        # Enough shards: each reader gets its own. Small corpora: every reader scans all shards and keeps
        # every slots-th sample, so no reader is left empty.
        by_shard = len(order) >= slots
        mine = order[slot::slots] if by_shard else order
        n_pass = 0
        while True:
            kept = 0
            paths = mine if n_pass == 0 else [mine[i] for i in rng.permutation(len(mine))]
            for i, sample in enumerate(iter_samples(paths)):
                if not by_shard and i % slots != slot:
                    continue
                key, video, audio, meta = decode_sample(sample)
                if not usable(video, meta, self.cfg.window):
                    continue
                kept += 1
                start = int(rng.integers(0, len(video) - self.cfg.window + 1))
                yield (f"{key}@{start}", *cut_window(video, audio, start, self.cfg.window))
            if kept == 0:
                raise RuntimeError(f"rank {self.rank} reader {slot} found no clip with audio and >= "
                                   f"{self.cfg.window} frames in {len(mine)} shards")
            n_pass += 1

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        slot, slots, quota = self._slot()
        rng = np.random.default_rng([self.seed, self.epoch, slot, 1])
        # a buffer larger than this reader's share of the corpus would only re-read it to fill up
        size = max(1, min(self.cfg.shuffle_buffer, self.total // slots))
        buffer: list = []
        batch: list = []
        windows = self._windows(slot, slots, rng)
        produced = 0
        while produced < quota:
            while len(buffer) < size:
                buffer.append(next(windows))
            key, video, audio = buffer.pop(int(rng.integers(len(buffer))))
            batch.append((key, video, audio))
            if len(batch) == self.cfg.batch_size:
                yield augmented_batch(batch, rng, self.cfg.augment)
                batch, produced = [], produced + 1


def train_loader(shards: list[ShardInfo], cfg: LoaderConfig, seed: int, rank: int, world: int,
                 pin_memory: bool = False) -> tuple[DataLoader, TrainWindows]:
    ds = TrainWindows(shards, cfg, seed, rank, world)
    workers = min(cfg.num_workers, ds.batches_per_rank)  # idle workers would only cost start-up time
    # spawn, not fork: forking a process that already runs torch threads (or CUDA) is unsafe
    loader = DataLoader(ds, batch_size=None, num_workers=workers, pin_memory=pin_memory,
                        multiprocessing_context="spawn" if workers else None)
    return loader, ds


def eval_windows(shards: list[ShardInfo], cfg: LoaderConfig, limit: int | None = None,
                 starts: tuple[str | int, ...] = ("centre",)) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
    """Deterministic evaluation windows: for each clip (in shard order, up to `limit` windows) one window
    per entry of `starts` ("centre" or a frame offset), centre-cropped, not augmented.
    Yields (key@start, video (window, crop, crop), audio (window * 640,))."""
    n = 0
    for sample in iter_samples([s.path for s in shards]):
        key, video, audio, meta = decode_sample(sample)
        if not usable(video, meta, cfg.window):
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
