"""WebDataset shards: the one writer (deterministic, atomic tar files of `<key>.<field>` members) and the one
reader that training, evaluation, inspection and previews all use.

Determinism: members are written in the order given (callers sort), with fixed metadata (mtime 0,
uid/gid 0, empty owner names, mode 0644, GNU format for long names); arrays are .npy without pickles and
JSON has sorted keys, so the same samples give byte-identical shards. Atomicity: each shard is written
to a temporary file beside it and renamed when complete; an identical existing shard is left untouched.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from preprocess.contract import SAMPLE_FIELDS, SAMPLES_PER_FRAME
from preprocess.fileio import replace_durably, sha256_file, tmp_path_for, writing_into

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
    """[(member name, bytes)] of one sample, in SAMPLE_FIELDS order."""
    check_key(key)
    payload = {"video.npy": npy_bytes(video), "audio.npy": npy_bytes(audio),
               "landmarks.npy": npy_bytes(landmarks), "json": json_bytes(meta)}
    return [(f"{key}.{name}", payload[name]) for name in SAMPLE_FIELDS]


def _member_size(name: str, size: int) -> int:
    blocks = BLOCK + -(-size // BLOCK) * BLOCK
    if len(name.encode()) > 100:  # GNU long-name header plus the name itself
        blocks += BLOCK + -(-(len(name.encode()) + 1) // BLOCK) * BLOCK
    return blocks


def sample_size(members: list) -> int:
    return sum(_member_size(name, len(data)) for name, data in members)


def tar_header(name: str, size: int) -> tarfile.TarInfo:
    """The fixed header every member gets (mtime 0, root, 0644): same samples, same bytes."""
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
class WrittenShard:
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
        self.shards: list[WrittenShard] = []
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
        """Add one sample's members; returns the name of the shard it went into. A full or unwritable folder:
        NotWritable (call abort: the shard being written is removed)."""
        size = sample_size(members)
        with writing_into(self.folder):
            if self._tar is not None and (self._count >= self.maxcount or self._size + size > self.maxsize):
                self._close()
            if self._tar is None:
                self._open()
            for name, data in members:
                self._tar.addfile(tar_header(name, len(data)), io.BytesIO(data))
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
            replace_durably(self._tmp, final)
        self.shards.append(WrittenShard(final.name, self.split, self._count, size, digest))
        self._tar = self._file = self._tmp = None

    def close(self) -> list[WrittenShard]:
        if self._tar is not None:
            with writing_into(self.folder):
                self._close()
        return self.shards

    def abort(self) -> None:
        if self._tar is not None:
            with contextlib.suppress(OSError):  # closing flushes: on a full disk that fails again
                self._file.close()
            self._tmp.unlink(missing_ok=True)
            self._tar = None


# ------------------------------------------------------------------------------------------- reading
# The header numpy writes for a C-order array of a plain dtype (what the crop stage writes), e.g.
# {'descr': '|u1', 'fortran_order': False, 'shape': (75, 96, 96), }
_NPY_HEADER = re.compile(r"\{'descr': '([<>|=]?[a-z]\d+)', 'fortran_order': False, 'shape': \(([\d, ]*)\), \}")
_NPY_MAGIC = b"\x93NUMPY\x01\x00"


def load_npy(data: bytes | bytearray) -> np.ndarray:
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


def crops_to_gray(crops: np.ndarray) -> np.ndarray:
    """Colour crops (T, H, W, 3) as the detector reads them (BT.601 luma); grayscale crops pass through."""
    if crops.ndim == 3:
        return crops
    return (crops.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).round().astype(np.uint8)


def decode_sample(sample: dict) -> tuple[str, np.ndarray, np.ndarray, dict]:
    """-> key, video uint8 (T, H, W) grayscale, audio float32 (T * 640,), json metadata."""
    key = sample["__key__"]
    missing = [k for k in ("video.npy", "audio.npy") if k not in sample]
    if missing:  # WebDataset cuts keys at the first dot: a dotted key loses its fields this way
        raise ValueError(f"sample {key!r} in {sample.get('__url__')} lacks {missing} "
                         f"(has {sorted(k for k in sample if not k.startswith('__'))}); dotted key?")
    video = load_npy(sample["video.npy"])
    if video.ndim == 4 and video.shape[-1] == 3:  # crops packed in colour (align.color): the model is gray
        video = crops_to_gray(video)
    audio = load_npy(sample["audio.npy"]).reshape(-1)
    if audio.dtype == np.int16:
        audio = audio.astype(np.float32) / 32768.0
    audio = audio.astype(np.float32, copy=False)
    if video.ndim != 3 or video.dtype != np.uint8 or len(audio) != len(video) * SAMPLES_PER_FRAME:
        raise ValueError(f"sample {key!r} breaks the shard contract: video {video.dtype}{video.shape}, "
                         f"audio {len(audio)} samples for {len(video)} frames (want {SAMPLES_PER_FRAME} per frame)")
    meta = json.loads(sample["json"]) if "json" in sample else {}
    return key, video, audio, meta


def iter_samples(paths: list[str]) -> Iterator[dict]:
    """Raw samples of the shards, in order: {"__key__", "__url__", field: bytes-like}, as WebDataset groups them.

    Local files are read with random access (one read per member, straight into its own buffer);
    anything else (URLs, pipes) through WebDataset's streaming tar reader.
    """
    for path in paths:
        if os.path.isfile(path):
            yield from _local_tar_samples(path)
        else:
            from webdataset.tariterators import tarfile_samples  # imports torch: only for remote shards

            yield from tarfile_samples([{"url": path}])


# WebDataset's grouping rule (webdataset.tariterators.base_plus_ext): the key is the member name up to the first
# dot of its base name. Written out here because importing webdataset imports torch (1.8 s for every stage
# process); tests/test_shards.py holds it equal to WebDataset's own.
_MEMBER_NAME = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")


def split_member_name(name: str) -> tuple[str | None, str | None]:
    """(sample key, field) of a tar member name, as WebDataset splits it; (None, None) without a dot."""
    match = _MEMBER_NAME.match(name)
    return (match.group(1), match.group(2)) if match else (None, None)


def sample_members(tar: tarfile.TarFile) -> Iterator[tuple[tarfile.TarInfo, str, str]]:
    """(member, sample key, lower-case field) of a shard's regular members, as WebDataset groups them: key =
    member name up to the first dot of its base name; meta members (`__index__`) and non-files skipped."""
    for member in tar:
        name = member.name
        if not member.isreg() or ("/" not in name and name.startswith("__") and name.endswith("__")):
            continue
        prefix, suffix = split_member_name(name)
        if prefix is not None:
            yield member, prefix, suffix.lower()


def _local_tar_samples(path: str) -> Iterator[dict]:
    """WebDataset's grouping (key = member name up to the first dot of its base name; meta members and
    non-files skipped) over a local tar. Reading each member with one readinto instead of WebDataset's
    stream mode (10 kB reads, joined and sliced) triples the read speed; the bytearray buffers make the
    arrays viewing them writable."""
    sample: dict | None = None
    with open(path, "rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
        for member, prefix, suffix in sample_members(tar):
            name = member.name
            if sample is None or sample["__key__"] != prefix:
                if sample is not None:
                    yield sample
                sample = {"__key__": prefix, "__url__": path}
            if suffix in sample:
                raise ValueError(f"{path}: {name} appears twice in sample {prefix!r}")
            data = bytearray(member.size)
            f.seek(member.offset_data)
            if f.readinto(data) != member.size:
                raise ValueError(f"{path}: member {name} is truncated")
            sample[suffix] = data
    if sample is not None:
        yield sample


@dataclass(frozen=True)
class SampleRef:
    """Where one sample's members lie in a local shard, and what decides whether it is used."""
    key: str
    members: tuple[tuple[str, int, int], ...]   # (field, data offset, size)
    n_frames: int
    has_audio: bool


def _npy_rows(head: bytes) -> int:
    """First dimension of a .npy array from the start of its bytes (-1 when unreadable)."""
    if head[:6] != b"\x93NUMPY":
        return -1
    size_bytes = 2 if head[6] == 1 else 4
    start = 8 + size_bytes
    header = head[start:start + int.from_bytes(head[8:start], "little")].decode("latin1")
    match = re.search(r"'shape': \((\d+)", header)
    return int(match.group(1)) if match else -1


def scan_shard(path: str) -> list[SampleRef]:
    """The samples of a local shard, in order, from the tar headers, the .npy header of each video and
    each json (no array payload read): what random access and the min_frames rule need."""
    refs: list[SampleRef] = []
    with open(path, "rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
        members: dict[str, dict] = {}
        order: list[str] = []
        for member, prefix, suffix in sample_members(tar):
            if prefix not in members:
                members[prefix] = {}
                order.append(prefix)
            members[prefix][suffix] = (member.offset_data, member.size)
        for key in order:
            fields = members[key]
            if "video.npy" not in fields or "audio.npy" not in fields:  # as decode_sample words it
                decode_sample({"__key__": key, "__url__": path, **fields})
            n_frames, has_audio = -1, True
            if "video.npy" in fields:
                f.seek(fields["video.npy"][0])
                n_frames = _npy_rows(f.read(min(fields["video.npy"][1], 512)))
            if "json" in fields:
                f.seek(fields["json"][0])
                has_audio = json.loads(f.read(fields["json"][1])).get("has_audio", True) is not False
            refs.append(SampleRef(key, tuple((k, o, n) for k, (o, n) in fields.items()), n_frames, has_audio))
    return refs


def read_ref(f, path: str, ref: SampleRef) -> dict:
    """One sample by random access: {"__key__", "__url__", field: bytearray}, as iter_samples gives it."""
    sample = {"__key__": ref.key, "__url__": path}
    for name, offset, size in ref.members:
        data = bytearray(size)
        f.seek(offset)
        if f.readinto(data) != size:
            raise ValueError(f"{path}: member {ref.key}.{name} is truncated")
        sample[name] = data
    return sample




def read_sample(path: str | os.PathLike, key: str) -> dict:
    """The fields of one sample of a local shard by random access: arrays (no pickles) and the json as a dict."""
    path = str(path)
    with open(path, "rb") as f:
        for ref in scan_shard(path):
            if ref.key == key:
                raw = read_ref(f, path, ref)
                return {name: json.loads(data) if name == "json" else load_npy(data)
                        for name, data in raw.items() if not name.startswith("__")}
    raise KeyError(f"sample {key} not found in {path}")
