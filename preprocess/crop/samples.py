"""One video's shard samples: mouths rendered from the resampled video, audio cut from its wav, landmarks and
metadata from the align stage; and the per-video tar they wait in until the crop stage packs the shards.

A sample per kept piece of the align output: `<corpus>__<video_id>__<segment>` with video.npy uint8
(T, 96, 96) (or (T, 96, 96, 3) with align.color), audio.npy float32 (T, 640), landmarks.npy float32
(T, 68, 2) in crop pixels, json (see sample_meta). Every manifest column derives from a sample's json and
member sizes (manifest_row), so a sample copied from an existing shard gives the same row as a fresh one.
"""
from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from preprocess.contract import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, sample_key
from preprocess.crop.render import iter_mouths
from preprocess.media import Pcm16
from preprocess.records import plain
from preprocess.shardformat import encode_sample, sample_members, tar_header

Members = list  # [(member name, bytes)] of one sample, in SAMPLE_FIELDS order


def segment_audio(audio: Pcm16 | None, start: int, end: int, shift: int) -> np.ndarray:
    """(end - start, 640) int16 audio of frames [start, end) shifted by `shift` frames; zeros where there is none."""
    n = end - start
    out = np.zeros(n * SAMPLES_PER_FRAME, np.int16)
    if audio is None:
        return out.reshape(n, SAMPLES_PER_FRAME)
    a0, a1 = (start + shift) * SAMPLES_PER_FRAME, (end + shift) * SAMPLES_PER_FRAME
    s0, s1 = max(a0, 0), min(a1, audio.n_samples)
    if s1 > s0:
        out[s0 - a0:s1 - a0] = audio.read(s0, s1)
    return out.reshape(n, SAMPLES_PER_FRAME)


def sample_meta(corpus: str, row: dict, piece: dict, meta: dict, has_audio: bool, params_hash: str) -> dict:
    """The json field of a sample."""
    return {
        "key": sample_key(corpus, row["video_id"], piece["segment"]), "corpus": corpus,
        "video_id": row["video_id"], "segment": piece["segment"], "track_segment": piece["track_segment"],
        "start_frame": piece["start_frame"], "end_frame": piece["end_frame"],
        "label": plain(row.get("label")), "method": plain(row.get("method")), "split": row["split"],
        "fps": FPS, "sample_rate": SAMPLE_RATE, "n_frames": piece["n_frames"], "sha256": row["sha256"],
        "sync_method": piece.get("sync_method"), "sync_offset": piece.get("sync_offset"),
        "sync_confidence": piece.get("sync_confidence"), "speaker_ambiguous": piece.get("speaker_ambiguous"),
        "audio_shift_frames": piece.get("audio_shift_frames"), "has_audio": has_audio,
        "interpolated_fraction": piece["interpolated_fraction"], "outlier_frames": piece["outlier_frames"],
        "landmark_backend": meta["backend"],
        "color": meta["color"], "params_hash": params_hash,
        "qc": {k: piece[k] for k in ("mouth_offset_mean", "mouth_offset_max", "mouth_width_median")},
    }


def manifest_row(members: Members) -> dict:
    """The manifest row of one sample (all but its shard), from its json and member sizes."""
    info = json.loads(next(data for name, data in members if name.endswith(".json")))
    return {"key": info["key"], "split": info["split"], "corpus": info["corpus"], "video_id": info["video_id"],
            **{k: info[k] for k in ("segment", "track_segment", "start_frame", "end_frame", "label", "method",
                                    "n_frames", "has_audio", "interpolated_fraction", "outlier_frames", "sync_method",
                                    "sync_offset", "sync_confidence", "speaker_ambiguous", "params_hash")},
            "seconds": info["n_frames"] / FPS, "landmark_backend": info["landmark_backend"], **info["qc"],
            "bytes": sum(len(d) for _, d in members)}


def open_audio(audio_path: Path | None) -> Pcm16 | None:
    """The resampled audio, None when the video has none; ValueError (plain words) when it is unreadable."""
    if audio_path is None or not Path(audio_path).exists():
        return None
    return Pcm16(Path(audio_path))


def render_samples(corpus: str, row: dict, aligned: tuple[dict, dict], video: Path, audio: Pcm16 | None,
                   params_hash_of, frame_transform=None) -> Iterator[tuple[str, Members]]:
    """(key, members) of every kept piece of one video, in segment order, from one decode of `video`.
    `aligned`: load_aligned's (arrays, meta) with piece, frame, crop_transforms and landmarks_crop.

    Memory: the crops of the pieces not yet complete (one piece when pieces follow each other in time).
    `params_hash_of(align params dict)` names the params the samples were made with (json params_hash)."""
    arrays, meta = aligned
    params_hash = params_hash_of(meta["params"])
    pieces = meta["pieces"]
    piece_of = arrays["piece"]
    starts = np.searchsorted(piece_of, np.arange(len(pieces)), side="left")  # rows of a piece are contiguous
    sizes = np.bincount(piece_of, minlength=len(pieces))
    frames = arrays["frame"].astype(np.int64)
    order = np.argsort(frames, kind="stable")  # pieces of overlapping track segments still decode once
    buffers: dict[int, np.ndarray] = {}
    left = sizes.copy()
    done = 0
    for pos, crops in iter_mouths(video, frames[order], arrays["crop_transforms"][order], meta["color"],
                                  frame_transform):
        for row_index, crop in zip(order[pos:pos + len(crops)], crops):
            p = int(piece_of[row_index])
            if p not in buffers:
                buffers[p] = np.empty((int(sizes[p]), *crop.shape), np.uint8)
            buffers[p][row_index - starts[p]] = crop
            left[p] -= 1
        while done < len(pieces) and left[done] == 0:
            yield _sample(corpus, row, pieces[done], meta, arrays, starts[done], buffers.pop(done), audio,
                          params_hash)
            done += 1


def _sample(corpus, row, piece, meta, arrays, start, crops, audio, params_hash) -> tuple[str, Members]:
    rows = slice(int(start), int(start) + len(crops))
    info = sample_meta(corpus, row, piece, meta, audio is not None, params_hash)
    shift = int(piece.get("audio_shift_frames") or 0)
    pcm = segment_audio(audio, piece["start_frame"], piece["end_frame"], shift)
    members = encode_sample(info["key"], crops, pcm.astype(np.float32) / np.float32(32768.0),
                            arrays["landmarks_crop"][rows].astype(np.float32), info)
    return info["key"], members


# ------------------------------------------------------------------------------ the per-video tar
def write_video_tar(path: Path, samples) -> tuple[int, int]:
    """Write (key, members) samples in order into a plain tar; returns (samples, frames)."""
    n_samples = n_frames = 0
    with open(path, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for _, members in samples:
            for name, data in members:
                tar.addfile(tar_header(name, len(data)), io.BytesIO(data))
            n_samples += 1
            n_frames += manifest_row(members)["n_frames"]
    return n_samples, n_frames


def read_video_tar(path: Path) -> Iterator[tuple[str, Members]]:
    """The (key, members) samples of a per-video tar, in order (keys hold no dots: sample_key checks)."""
    key, members = None, []
    with tarfile.open(path, mode="r:") as tar:
        for member, prefix, _ in sample_members(tar):  # the shard reader's grouping
            if prefix != key and members:
                yield key, members
                members = []
            key = prefix
            members.append((member.name, tar.extractfile(member).read()))
    if members:
        yield key, members
