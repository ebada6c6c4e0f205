"""Reading the resample stage's outputs: frames of the 25 fps video in batches, and the 16 kHz audio."""
from __future__ import annotations

import wave
from pathlib import Path
from typing import Callable, Iterator

import av
import numpy as np

from preprocess.contract import SAMPLE_RATE


def _decoded_batches(video: Path, batch: int, to_array: Callable) -> Iterator[np.ndarray]:
    """The one decode loop: each frame of the first video stream through `to_array`, stacked `batch` at a time
    (bounded memory), with the decoder's own threads."""
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        buffer: list[np.ndarray] = []
        for frame in container.decode(stream):
            buffer.append(to_array(frame))
            if len(buffer) == batch:
                yield np.stack(buffer)
                buffer = []
        if buffer:
            yield np.stack(buffer)


def iter_frame_batches(video: Path, batch: int = 64, gray: bool = False) -> Iterator[np.ndarray]:
    """Yield uint8 arrays (B, H, W, 3) RGB, or (B, H, W) when `gray`, decoding once with bounded memory."""
    fmt = "gray" if gray else "rgb24"
    return _decoded_batches(video, batch, lambda frame: frame.to_ndarray(format=fmt))


def video_size(video: Path) -> tuple[int, int]:
    """(width, height) of the first video stream, from its header: no decode."""
    with av.open(str(video)) as container:
        ctx = container.streams.video[0].codec_context
        return ctx.width, ctx.height


def iter_i420_batches(video: Path, size: tuple[int, int], batch: int = 64) -> Iterator[np.ndarray]:
    """Yield uint8 (B, h * 3 // 2, w) planar YUV 4:2:0 (I420) frames scaled to `size` = (w, h), both even.

    For steps that need small frames (detection, shot cuts, motion): the decoder's own scaler shrinks
    each frame in its native YUV, so no full-size RGB frame is ever made (at 720p that conversion and
    the resize after it cost more than the decode). Rows [:h] are the luma: a gray frame for free;
    cv2.cvtColor(..., COLOR_YUV2RGB_I420 / COLOR_YUV2BGR_I420) gives colour where it is needed.
    AREA interpolation: every source pixel counts, as with OpenCV's INTER_AREA.
    """
    width, height = size
    if width % 2 or height % 2 or width < 2 or height < 2:
        raise ValueError(f"I420 frames need an even size of at least 2x2, not {width}x{height}")
    return _decoded_batches(video, batch, lambda frame: frame.reformat(
        width=width, height=height, format="yuv420p", interpolation="AREA").to_ndarray())


def read_frames(video: Path, gray: bool = False) -> np.ndarray:
    """Whole video in memory: for short clips and tests only."""
    return np.concatenate(list(iter_frame_batches(video, gray=gray)))


class Pcm16:
    """The resampled audio (16 kHz mono 16-bit), read by sample ranges or chunks: never the whole file
    in memory unless asked for."""

    def __init__(self, wav_path: Path):
        with wave.open(str(wav_path), "rb") as wav:
            if wav.getnchannels() != 1 or wav.getsampwidth() != 2 or wav.getframerate() != SAMPLE_RATE:
                raise ValueError(f"audio {Path(wav_path).name} is not 16 kHz mono 16-bit PCM")
            self.n_samples = wav.getnframes()
        self.path = wav_path

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """int16 samples [start, stop), 0 <= start <= stop <= n_samples."""
        stop = self.n_samples if stop is None else stop
        with wave.open(str(self.path), "rb") as wav:
            wav.setpos(start)
            return np.frombuffer(wav.readframes(stop - start), dtype="<i2")

    def chunks(self, samples: int) -> Iterator[np.ndarray]:
        """int16 blocks of `samples` (the last one shorter)."""
        with wave.open(str(self.path), "rb") as wav:
            while True:
                block = np.frombuffer(wav.readframes(samples), dtype="<i2")
                if not len(block):
                    return
                yield block


def read_audio(wav_path: Path) -> np.ndarray:
    """The whole file as float32 in [-1, 1]."""
    return Pcm16(wav_path).read().astype(np.float32) / 32768.0
