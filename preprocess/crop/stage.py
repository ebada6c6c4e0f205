"""crop@CORPUS: pack the align stage's mouth crops and audio into WebDataset shards, per split.

No decoding here: the align stage already rendered the 96x96 crops in its single pass over each video.
Outputs, under `data/shards/<corpus>/`:
  <split>-%06d.tar   samples `<corpus>__<video_id>__<segment>` with video.npy uint8 (T, 96, 96) (or
                     (T, 96, 96, 3) with align.color), audio.npy float32 (T, 640), landmarks.npy float32
                     (T, 68, 2) in crop pixels, json (see sample_meta)
  manifest.parquet   one row per sample (key, shard, split, label, method, n_frames, QC fields)
  index.json         per shard: split, samples, bytes, sha256
and per-video status records in `data/crop/<corpus>/status/` plus a copy of the index at
`data/crop/<corpus>/index.json` (the small file the collect stage depends on).
Samples are ordered by split, video id and segment, so reruns give byte-identical shards; a killed run
leaves only temporary files, removed at the next start, which then rewrites what is missing.
"""
from __future__ import annotations

import json
import math
import sys
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from preprocess import paths
from preprocess.align import stage as align_stage
from preprocess.contract import FPS, SAMPLE_RATE, sample_key, split_order
from preprocess.fileio import prune_outputs, remove_leftover_tmp_files, write_bytes_atomic, write_parquet_atomic
from preprocess.records import FAILED, OK, SKIPPED, CorpusRef, StatusRecord, write_record, write_status_table
from preprocess.settings import section, stable_hash
from preprocess.shardformat import ShardWriter, encode_sample

STAGE = "crop"
UPSTREAM = align_stage.STAGE
VERSION = 1
MANIFEST_COLUMNS = ["key", "shard", "split", "corpus", "video_id", "segment", "track_segment", "start_frame",
                    "end_frame", "label", "method", "n_frames", "seconds", "has_audio", "interpolated_fraction",
                    "sync_method", "sync_offset", "sync_confidence", "speaker_ambiguous", "mouth_offset_mean",
                    "mouth_offset_max", "mouth_width_median", "landmark_backend", "params_hash", "bytes"]


@dataclass(frozen=True)
class CropParams:
    maxcount: int = 1000  # samples per shard at most
    maxsize: int = 1_000_000_000  # bytes per shard at most (a single bigger sample gets its own shard)


def settings(params: dict, corpus: CorpusRef | None = None) -> CropParams:
    return section(params, STAGE, CropParams)


def shard_dir(corpus: str) -> Path:
    return paths.project_root() / "data" / "shards" / corpus


def index_paths(corpus: str) -> tuple[Path, Path]:
    """The shard index beside the shards, and its copy in the stage folder (what collect reads)."""
    return shard_dir(corpus) / "index.json", paths.stage_dir(STAGE, corpus) / "index.json"


def _plain(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def sample_meta(corpus: str, row: dict, piece: dict, meta: dict, params_hash: str) -> dict:
    """The json field of a sample."""
    return {
        "key": sample_key(corpus, row["video_id"], piece["segment"]), "corpus": corpus,
        "video_id": row["video_id"], "segment": piece["segment"], "track_segment": piece["track_segment"],
        "start_frame": piece["start_frame"], "end_frame": piece["end_frame"],
        "label": _plain(row.get("label")), "method": _plain(row.get("method")), "split": row["split"],
        "fps": FPS, "sample_rate": SAMPLE_RATE, "n_frames": piece["n_frames"], "sha256": row["sha256"],
        "sync_method": piece.get("sync_method"), "sync_offset": piece.get("sync_offset"),
        "sync_confidence": piece.get("sync_confidence"), "speaker_ambiguous": piece.get("speaker_ambiguous"),
        "audio_shift_frames": piece.get("audio_shift_frames"), "has_audio": meta["has_audio"],
        "interpolated_fraction": piece["interpolated_fraction"], "landmark_backend": meta["backend"],
        "color": meta["color"], "params_hash": params_hash,
        "qc": {k: piece[k] for k in ("mouth_offset_mean", "mouth_offset_max", "mouth_width_median")},
    }


def video_samples(corpus: str, row: dict, params_hash_of) -> list[tuple[str, list, dict]]:
    """[(key, tar members, manifest row)] of one aligned video, in segment order."""
    from preprocess.align.align_video import load_aligned

    arrays, meta = load_aligned(align_stage.output_path(corpus, row["video_id"]),
                                keys=("piece", "crops", "audio", "landmarks_crop"))
    params_hash = params_hash_of(meta["params"])
    out = []
    for piece in meta["pieces"]:
        sel = arrays["piece"] == piece["segment"]
        info = sample_meta(corpus, row, piece, meta, params_hash)
        audio = arrays["audio"][sel].astype(np.float32) / np.float32(32768.0)
        members = encode_sample(info["key"], arrays["crops"][sel], audio,
                                arrays["landmarks_crop"][sel].astype(np.float32), info)
        manifest_row = {"key": info["key"], "split": row["split"], "corpus": corpus, "video_id": row["video_id"],
                        **{k: info[k] for k in ("segment", "track_segment", "start_frame", "end_frame", "label",
                                                "method", "n_frames", "has_audio", "interpolated_fraction",
                                                "sync_method", "sync_offset", "sync_confidence",
                                                "speaker_ambiguous", "params_hash")},
                        "seconds": info["n_frames"] / FPS, "landmark_backend": meta["backend"], **info["qc"],
                        "bytes": sum(len(d) for _, d in members)}
        out.append((info["key"], members, manifest_row))
    return out


def pack(corpus: CorpusRef, videos: list, settled: list[StatusRecord], stage_params: CropParams,
         params: dict) -> list[StatusRecord]:
    """Pack every video the align stage passed on (`videos`: (manifest row, align record)) into the corpus's
    shards; `settled` are the rows of the others. One process: no per-video heavy work is left."""
    name = corpus.name
    out = shard_dir(name)
    remove_leftover_tmp_files(out)
    remove_leftover_tmp_files(paths.stage_dir(STAGE, name))
    for index in index_paths(name):  # written last: an index never names shards being rewritten
        index.unlink(missing_ok=True)

    def params_hash_of(align_params: dict) -> str:
        # every section that shaped the samples (fingerprints chain the same per video)
        upstream = {section_name: params.get(section_name) for section_name in ("resample", "track")}
        return stable_hash(align_stage.VERSION, VERSION, upstream, align_params, asdict(stage_params))

    splits = sorted({row["split"] for row, _ in videos}, key=split_order)
    records, manifest_rows, shards = list(settled), [], []
    for split in splits:
        writer = ShardWriter(out, split, stage_params.maxcount, stage_params.maxsize)
        try:
            for row, upstream in (v for v in videos if v[0]["split"] == split):
                record, samples = _pack_video(name, row, upstream, stage_params, params_hash_of)
                for _, members, manifest_row in samples:
                    manifest_row["shard"] = writer.write(members)
                    manifest_rows.append(manifest_row)
                records.append(record)
        except BaseException:
            writer.abort()
            raise
        shards += writer.close()
    _remove_stale_shards(out, {s.shard for s in shards})
    _write_tables(name, out, manifest_rows, shards, stage_params)
    for record in records:
        write_record(record)
    prune_outputs([paths.status_dir(STAGE, name)], {r.video_id for r in records})
    write_status_table(STAGE, name, records)
    counts = {s: sum(r.status == s for r in records) for s in (OK, FAILED, SKIPPED)}
    print(f"crop@{name}: {counts[OK]} ok, {counts[FAILED]} failed, {counts[SKIPPED]} skipped; "
          f"{len(manifest_rows)} samples in {len(shards)} shards", file=sys.stderr)
    return sorted(records, key=lambda r: r.video_id)


def _pack_video(corpus: str, row: dict, upstream: StatusRecord, stage_params: CropParams, params_hash_of):
    video_id = row["video_id"]
    fingerprint = stable_hash(VERSION, upstream.fingerprint, asdict(stage_params))
    try:
        samples = video_samples(corpus, row, params_hash_of)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        return StatusRecord(corpus, video_id, STAGE, FAILED, f"align output unreadable: {exc}", fingerprint), []
    details = {"n_samples": len(samples), "n_frames": int(sum(m["n_frames"] for _, _, m in samples))}
    return StatusRecord(corpus, video_id, STAGE, OK, "", fingerprint, 0.0, details), samples


def _remove_stale_shards(out: Path, keep: set[str]) -> None:
    for path in out.glob("*.tar"):
        if path.name not in keep:
            path.unlink()


def _write_tables(corpus: str, out: Path, manifest_rows: list, shards: list, stage_params: CropParams) -> None:
    table = pd.DataFrame(manifest_rows, columns=MANIFEST_COLUMNS)
    table = table.astype({"segment": "int32", "track_segment": "int32", "start_frame": "int32",
                          "end_frame": "int32", "n_frames": "int32", "bytes": "int64", "sync_offset": "Float64",
                          "sync_confidence": "float64"})
    write_parquet_atomic(out / "manifest.parquet", table)
    # per-video labels (corpus add --labels) can mix real and fake in one shard: count them per shard
    def counts(column: str) -> dict:
        return {shard: {str(k): int(n) for k, n in group.value_counts().items()}
                for shard, group in table.groupby("shard")[column]}

    labels, methods = counts("label"), counts("method")
    index = {"corpus": corpus, "params": asdict(stage_params),
             "shards": [{"shard": s.shard, "split": s.split, "samples": s.samples, "bytes": s.bytes,
                         "sha256": s.sha256, "labels": labels.get(s.shard, {}),
                         "methods": methods.get(s.shard, {})} for s in shards]}
    blob = json.dumps(index, indent=1, sort_keys=True).encode()
    for index in index_paths(corpus):
        write_bytes_atomic(index, blob)
