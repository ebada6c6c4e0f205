"""Small shards in the crop-stage format, made from real talking-face clips, for tests and benchmarks.

The crop stage (preprocess/) writes the real thing; this writes the same sample schema from a fixed
96x96 box so the training side can be tested on real faces, lips and speech before those shards exist.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import av
import numpy as np
import webdataset as wds

FPS, RATE, SPF = 25, 16000, 640  # 640 audio samples per video frame
GRID_MOUTH_BOX = (157, 122, 96)   # (top, left, size) around the mouth in 360x288 GRID frames


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def decode_clip(path: str | os.PathLike, box=GRID_MOUTH_BOX) -> tuple[np.ndarray, np.ndarray]:
    """-> video uint8 (T, 96, 96) grayscale crop, audio float32 (T, 640) mono 16 kHz in [-1, 1]."""
    top, left, size = box
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="gray")[top:top + size, left:left + size] for f in c.decode(video=0)]
    video = np.stack(frames).astype(np.uint8)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
    chunks = []
    with av.open(str(path)) as c:
        for frame in c.decode(audio=0):
            chunks += [o.to_ndarray().reshape(-1) for o in resampler.resample(frame)]
    chunks += [o.to_ndarray().reshape(-1) for o in resampler.resample(None)]
    audio = np.concatenate(chunks)
    n = len(video) * SPF  # decoded audio runs a little short or long: pad / trim to the frame count
    audio = np.pad(audio, (0, max(0, n - len(audio))))[:n]
    return video, np.clip(audio, -1, 1).astype(np.float32).reshape(len(video), SPF)


def write_shards(clips: list[str | os.PathLike], out_dir: str | os.PathLike, corpus: str = "grid",
                 split: str = "train", per_shard: int = 3, repeat: int = 1) -> list[dict]:
    """Write `<split>-%06d.tar` shards; `repeat` copies each clip under new segment keys (to make a corpus
    bigger for loader tests). Returns index entries {path, sha256, samples} like the collect stage's."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    decoded = [(Path(p).stem, *decode_clip(p)) for p in sorted(map(str, clips))]
    samples = []
    for seg in range(repeat):
        for vid, video, audio in decoded:
            meta = {"corpus": corpus, "video_id": vid, "label": "real", "method": None, "split": split,
                    "fps": FPS, "sample_rate": RATE, "n_frames": len(video)}
            samples.append({"__key__": f"{corpus}__{vid}__{seg:04d}", "video.npy": npy_bytes(video),
                            "audio.npy": npy_bytes(audio),
                            "landmarks.npy": npy_bytes(np.zeros((len(video), 68, 2), np.float32)),
                            "json": json.dumps(meta).encode()})
    index = []
    for i in range(0, len(samples), per_shard):
        path = out / f"{split}-{i // per_shard:06d}.tar"
        with wds.TarWriter(str(path)) as w:
            for s in samples[i:i + per_shard]:
                w.write(s)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        index.append({"path": str(path), "sha256": digest, "samples": len(samples[i:i + per_shard])})
    return index
