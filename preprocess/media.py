"""Reading the resample stage's outputs: frames of the 25 fps video in batches, and the 16 kHz audio."""
from __future__ import annotations

import wave
from pathlib import Path
from typing import Iterator

import av
import numpy as np


def iter_frame_batches(video: Path, batch: int = 64, gray: bool = False,
                       scale: float = 1.0) -> Iterator[np.ndarray]:
    """Yield uint8 arrays (B, H, W, 3) RGB, or (B, H, W) when `gray`, decoding once with bounded memory.

    `scale` < 1 downsizes inside the decoder's converter (cheaper than resizing afterwards).
    """
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fmt = "gray" if gray else "rgb24"
        buffer: list[np.ndarray] = []
        for frame in container.decode(stream):
            if scale != 1.0:
                frame = frame.reformat(width=round(frame.width * scale / 2) * 2,
                                       height=round(frame.height * scale / 2) * 2)
            buffer.append(frame.to_ndarray(format=fmt))
            if len(buffer) == batch:
                yield np.stack(buffer)
                buffer = []
        if buffer:
            yield np.stack(buffer)


def read_frames(video: Path, gray: bool = False) -> np.ndarray:
    """Whole video in memory: for short clips and tests only."""
    return np.concatenate(list(iter_frame_batches(video, gray=gray)))


def read_audio(wav_path: Path) -> np.ndarray:
    """16-bit mono PCM as float32 in [-1, 1]."""
    with wave.open(str(wav_path), "rb") as wav:
        if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
            raise ValueError(f"{wav_path}: expected 16-bit mono PCM")
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768.0


def audio_rate(wav_path: Path) -> int:
    with wave.open(str(wav_path), "rb") as wav:
        return wav.getframerate()
