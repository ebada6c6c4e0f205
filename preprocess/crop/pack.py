"""Packing a corpus's samples into its shards, so that a kill at any moment resumes to the same bytes.

Sources: each video's samples come from its per-video tar (just rendered, `data/crop/<corpus>/rendered/
<video_id>.<fingerprint>.tar`) or, when its crop fingerprint is the one its samples were packed with
(`data/crop/<corpus>/packed.json`), from the current shards (the manifest names key -> shard).

Two phases. Staging: every shard, the manifest, the index and packed.json are written into
`data/shards/<corpus>/.staging/` (the current shards stay whole: they are the sources; every file is
fsynced before its rename), and a
COMPLETE marker is written. Commit: the indexes are removed (no index ever names a half-replaced set), staged
shards replace the current ones (an identical one is left untouched), stale shards go, then the manifest,
packed.json and the indexes; only then are the per-video tars and the staging folder deleted. A kill before the
marker leaves the old shards and every per-video tar (the next run packs again; a failure such as a full disk
removes the unfinished staging folder at once); a kill or failure after it is rolled forward by the next run
(`commit` is idempotent).
"""
from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from preprocess import paths
from preprocess.contract import split_order
from preprocess.crop.samples import manifest_row, read_video_tar
from preprocess.fileio import (read_parquet, rows_to_table, sha256_file, write_bytes_atomic, write_parquet_atomic,
                              writing_into)
from preprocess.shardformat import ShardWriter, read_ref, scan_shard

STAGE = "crop"
STAGING = ".staging"
COMPLETE = "COMPLETE"
MANIFEST_SCHEMA = pa.schema([
    ("key", pa.string()), ("shard", pa.string()), ("split", pa.string()), ("corpus", pa.string()),
    ("video_id", pa.string()), ("segment", pa.int32()), ("track_segment", pa.int32()), ("start_frame", pa.int32()),
    ("end_frame", pa.int32()), ("label", pa.string()), ("method", pa.string()), ("n_frames", pa.int32()),
    ("seconds", pa.float64()), ("has_audio", pa.bool_()), ("interpolated_fraction", pa.float64()),
    ("outlier_frames", pa.int32()), ("sync_method", pa.string()), ("sync_offset", pa.float64()),
    ("sync_confidence", pa.float64()), ("speaker_ambiguous", pa.bool_()), ("mouth_offset_mean", pa.float64()),
    ("mouth_offset_max", pa.float64()), ("mouth_width_median", pa.float64()), ("landmark_backend", pa.string()),
    ("params_hash", pa.string()), ("bytes", pa.int64())])


def shard_dir(corpus: str) -> Path:
    return paths.project_root() / "data" / "shards" / corpus


def index_paths(corpus: str) -> tuple[Path, Path]:
    """The shard index beside the shards, and its copy in the stage folder (what collect reads)."""
    return shard_dir(corpus) / "index.json", paths.stage_dir(STAGE, corpus) / "index.json"


def packed_path(corpus: str) -> Path:
    """{video_id: crop fingerprint} of the samples in the current shards."""
    return paths.stage_dir(STAGE, corpus) / "packed.json"


def rendered_dir(corpus: str) -> Path:
    return paths.stage_dir(STAGE, corpus) / "rendered"


def rendered_path(corpus: str, video_id: str, fingerprint: str) -> Path:
    return rendered_dir(corpus) / f"{video_id}.{fingerprint}.tar"


@dataclass
class Packed:
    """What the current shards hold: the fingerprint each video was packed with, and its (key, shard)s."""
    fingerprints: dict[str, str]
    samples: dict[str, list[tuple[str, str]]]

    def shard_paths(self, corpus: str, video_id: str, fingerprint: str) -> list[Path] | None:
        """The shards holding this video's samples made with `fingerprint`; None when they hold no such."""
        if self.fingerprints.get(video_id) != fingerprint or not self.samples.get(video_id):
            return None
        return sorted({shard_dir(corpus) / shard for _, shard in self.samples[video_id]})


def read_packed(corpus: str) -> Packed:
    manifest, packed = shard_dir(corpus) / "manifest.parquet", packed_path(corpus)
    if not manifest.exists() or not packed.exists() or not index_paths(corpus)[0].exists():
        return Packed({}, {})  # no committed set of shards
    samples: dict[str, list[tuple[str, str]]] = {}
    rows = read_parquet(manifest, columns=["key", "shard", "video_id", "segment"]).to_pylist()
    for row in sorted(rows, key=lambda r: (r["video_id"], r["segment"])):
        samples.setdefault(row["video_id"], []).append((row["key"], row["shard"]))
    return Packed(json.loads(packed.read_bytes()), samples)


class _ShardSamples:
    """Members of samples in the current shards, by random access (each shard's headers scanned once)."""

    def __init__(self, folder: Path):
        self.folder, self.refs = folder, {}

    def members(self, key: str, shard: str) -> list:
        path = str(self.folder / shard)
        if path not in self.refs:
            self.refs[path] = {ref.key: ref for ref in scan_shard(path)}
        ref = self.refs[path][key]
        with open(path, "rb") as f:
            raw = read_ref(f, path, ref)
        return [(f"{key}.{name}", bytes(raw[name])) for name, _, _ in ref.members]


def pack(corpus: str, videos: list[tuple[str, str, str]], maxcount: int, maxsize: int
         ) -> tuple[list[str], int, int]:
    """Stage and commit the shards of `videos` ((video_id, split, fingerprint), any order). Returns the
    videos whose samples could be found nowhere (left out), the number of samples and of shards."""
    out = shard_dir(corpus)
    staging = out / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    with writing_into(out):
        staging.mkdir(parents=True)
    packed, shard_samples = read_packed(corpus), _ShardSamples(out)
    videos = sorted(videos, key=lambda v: (split_order(v[1]), v[0]))
    rows, shards, missing, fingerprints = [], [], [], {}
    try:
        for split in sorted({v[1] for v in videos}, key=split_order):
            writer = ShardWriter(staging, split, maxcount, maxsize)
            try:
                for video_id, _, fingerprint in (v for v in videos if v[1] == split):
                    samples = _samples(corpus, video_id, fingerprint, packed, shard_samples)
                    if samples is None:
                        missing.append(video_id)
                        continue
                    for _, members in samples:
                        row = manifest_row(members)
                        row["shard"] = writer.write(members)
                        rows.append(row)
                    fingerprints[video_id] = fingerprint
            except BaseException:
                writer.abort()
                raise
            shards += writer.close()
        _write_tables(corpus, staging, rows, shards, maxcount, maxsize, fingerprints)
        write_bytes_atomic(staging / COMPLETE, b"")
    except BaseException:  # e.g. the disk filled: no half-staged set is left (the sources are all still there)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    commit(corpus)
    return missing, len(rows), len(shards)


def _samples(corpus, video_id, fingerprint, packed: Packed, shard_samples: _ShardSamples):
    rendered = rendered_path(corpus, video_id, fingerprint)
    if rendered.exists():
        return read_video_tar(rendered)
    if packed.shard_paths(corpus, video_id, fingerprint) is None:
        return None
    return ((key, shard_samples.members(key, shard)) for key, shard in packed.samples[video_id])


def _write_tables(corpus: str, folder: Path, rows: list, shards: list, maxcount: int, maxsize: int,
                  fingerprints: dict) -> None:
    table = rows_to_table(rows, MANIFEST_SCHEMA)  # no sync offset, a NaN confidence: null
    write_parquet_atomic(folder / "manifest.parquet", table)

    # per-video labels (corpus add --labels) can mix real and fake in one shard: count them per shard
    def counts(column: str) -> dict:
        per_shard: dict[str, Counter] = {}
        for row in rows:
            if row.get(column) is not None:
                per_shard.setdefault(row["shard"], Counter())[str(row[column])] += 1
        return {shard: dict(counter) for shard, counter in per_shard.items()}

    labels, methods = counts("label"), counts("method")
    index = {"corpus": corpus, "params": {"maxcount": maxcount, "maxsize": maxsize},
             "shards": [{"shard": s.shard, "split": s.split, "samples": s.samples, "bytes": s.bytes,
                         "sha256": s.sha256, "labels": labels.get(s.shard, {}),
                         "methods": methods.get(s.shard, {})} for s in shards]}
    write_bytes_atomic(folder / "index.json", json.dumps(index, indent=1, sort_keys=True).encode())
    write_bytes_atomic(folder / "packed.json", json.dumps(fingerprints, indent=0, sort_keys=True).encode())


def commit(corpus: str) -> bool:
    """Put a completely staged set of shards in place (or finish doing so after a kill); remove an unfinished
    one. Returns whether a staged set was committed."""
    out = shard_dir(corpus)
    staging = out / STAGING
    if not (staging / COMPLETE).exists():
        shutil.rmtree(staging, ignore_errors=True)  # an unfinished pack: the per-video tars are all still there
        return False
    staged_index = staging / "index.json"
    if staged_index.exists():  # else a kill came after the last step below: only the cleanup is left
        index = json.loads(staged_index.read_bytes())
        for path in index_paths(corpus):
            path.unlink(missing_ok=True)
        keep = {s["shard"]: s for s in index["shards"]}
        for name, info in sorted(keep.items()):
            staged, final = staging / name, out / name
            if not staged.exists():
                continue  # moved by the commit a kill interrupted
            if final.exists() and final.stat().st_size == info["bytes"] and sha256_file(final) == info["sha256"]:
                staged.unlink()  # identical shard already in place: keep it (and its mtime)
            else:
                os.replace(staged, final)
        for path in out.glob("*.tar"):
            if path.name not in keep:
                path.unlink()
        if (staging / "manifest.parquet").exists():
            os.replace(staging / "manifest.parquet", out / "manifest.parquet")
        write_bytes_atomic(packed_path(corpus), (staging / "packed.json").read_bytes())
        write_bytes_atomic(index_paths(corpus)[1], staged_index.read_bytes())
        os.replace(staged_index, index_paths(corpus)[0])
    shutil.rmtree(rendered_dir(corpus), ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)
    return True
