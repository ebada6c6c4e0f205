"""WebDataset shards: deterministic, atomic tar files of samples (`<key>.<field>` members).

Determinism: members are written in the order given (callers sort), with fixed metadata (mtime 0,
uid/gid 0, empty owner names, mode 0644, GNU format for long names); arrays are .npy without pickles and
JSON has sorted keys, so the same samples give byte-identical shards. Atomicity: each shard is written
to a temporary file beside it and renamed when complete; an identical existing shard is left untouched.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.atomic import tmp_path_for
from pipeline.manifest import sha256_file

FIELDS = ("video.npy", "audio.npy", "landmarks.npy", "json")  # member order inside a sample
BLOCK = 512


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def json_bytes(record: dict) -> bytes:
    return json.dumps(record, sort_keys=True, ensure_ascii=False, allow_nan=False).encode()


def check_key(key: str) -> str:
    """WebDataset cuts keys at the first dot of a member name: a dot would silently split samples."""
    if "." in key or "/" in key or not key.isascii() or not key:
        raise ValueError(f"sample key {key!r} must be non-empty ASCII without dots or slashes")
    return key


def encode_sample(key: str, video: np.ndarray, audio: np.ndarray, landmarks: np.ndarray, meta: dict) -> list:
    """[(member name, bytes)] of one sample, in FIELDS order."""
    check_key(key)
    payload = {"video.npy": npy_bytes(video), "audio.npy": npy_bytes(audio),
               "landmarks.npy": npy_bytes(landmarks), "json": json_bytes(meta)}
    return [(f"{key}.{name}", payload[name]) for name in FIELDS]


def _member_size(name: str, size: int) -> int:
    blocks = BLOCK + -(-size // BLOCK) * BLOCK
    if len(name.encode()) > 100:  # GNU long-name header plus the name itself
        blocks += BLOCK + -(-(len(name.encode()) + 1) // BLOCK) * BLOCK
    return blocks


def sample_size(members: list) -> int:
    return sum(_member_size(name, len(data)) for name, data in members)


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


class HashingFile:
    """A binary file that hashes what is written to it: a shard's sha256 without reading it back."""

    def __init__(self, path: Path):
        self._file = open(path, "wb")
        self._digest = hashlib.sha256()

    def write(self, data) -> int:
        self._digest.update(data)
        return self._file.write(data)

    def tell(self) -> int:  # tarfile asks where it is
        return self._file.tell()

    def hexdigest(self) -> str:
        return self._digest.hexdigest()

    def close(self) -> None:
        self._file.close()


@dataclass
class ShardInfo:
    shard: str  # file name, relative to the shard folder
    split: str
    samples: int
    bytes: int
    sha256: str


class ShardWriter:
    """Write samples into `folder/<split>-%06d.tar`, starting a new shard at maxcount samples or before
    maxsize bytes would be passed (a single larger sample gets a shard of its own)."""

    def __init__(self, folder: Path, split: str, maxcount: int, maxsize: int):
        self.folder, self.split = Path(folder), split
        self.maxcount, self.maxsize = int(maxcount), int(maxsize)
        self.shards: list[ShardInfo] = []
        self._tar = self._file = self._tmp = None
        self._count = self._size = 0

    def _name(self, number: int) -> str:
        return f"{self.split}-{number:06d}.tar"

    def _open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._tmp = tmp_path_for(self.folder / self._name(len(self.shards)))
        self._file = HashingFile(self._tmp)
        self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.GNU_FORMAT)
        self._count, self._size = 0, 2 * BLOCK

    def write(self, members: list) -> str:
        """Add one sample's members; returns the name of the shard it went into."""
        size = sample_size(members)
        if self._tar is not None and (self._count >= self.maxcount or self._size + size > self.maxsize):
            self._close()
        if self._tar is None:
            self._open()
        for name, data in members:
            self._tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))
        self._count += 1
        self._size += size
        return self._name(len(self.shards))

    def _close(self) -> None:
        self._tar.close()
        self._file.close()
        final = self.folder / self._name(len(self.shards))
        digest, size = self._file.hexdigest(), self._tmp.stat().st_size
        if final.exists() and final.stat().st_size == size and sha256_file(final) == digest:
            self._tmp.unlink()  # identical shard already in place: keep it (and its mtime)
        else:
            os.replace(self._tmp, final)
        self.shards.append(ShardInfo(final.name, self.split, self._count, size, digest))
        self._tar = self._file = self._tmp = None

    def close(self) -> list[ShardInfo]:
        if self._tar is not None:
            self._close()
        return self.shards

    def abort(self) -> None:
        if self._tar is not None:
            self._file.close()
            self._tmp.unlink(missing_ok=True)
            self._tar = None
