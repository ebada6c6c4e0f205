"""Reading the resample stage's outputs: frames of the 25 fps video in batches, and the 16 kHz audio."""
from __future__ import annotations

import functools
import wave
from pathlib import Path
from typing import Callable, Iterator

import av
import cv2
import numpy as np

from preprocess.contract import SAMPLE_RATE


def iter_video_frames(video: Path) -> Iterator[av.VideoFrame]:
    """The one decode loop: every frame of the first video stream, in order, as the decoder gives it (its
    own pixel format: no conversion), with the decoder's own threads."""
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        yield from container.decode(stream)


def _decoded_batches(video: Path, batch: int, to_array: Callable) -> Iterator[np.ndarray]:
    """Each frame through `to_array`, stacked `batch` at a time (bounded memory)."""
    buffer: list[np.ndarray] = []
    for frame in iter_video_frames(video):
        buffer.append(to_array(frame))
        if len(buffer) == batch:
            yield np.stack(buffer)
            buffer = []
    if buffer:
        yield np.stack(buffer)


# Planar YUV formats whose region can be cut from the planes and converted alone (PyAV builds frames of these
# from arrays), with their chroma subsampling (x, y).
_PLANAR_YUV = {"yuv420p": (2, 2), "yuvj420p": (2, 2), "yuv444p": (1, 1), "yuvj444p": (1, 1)}


def _frame_of_planes(planes: list[np.ndarray], pixel_format: str) -> av.VideoFrame:
    """A frame of `pixel_format` from its Y, U, V planes, in the array layout PyAV takes for that format."""
    if _PLANAR_YUV[pixel_format] == (1, 1):
        return av.VideoFrame.from_ndarray(np.stack(planes), format=pixel_format)  # (3, H, W)
    width = planes[0].shape[1]  # 4:2:0: the planes one after the other, as rows of the luma's width
    return av.VideoFrame.from_ndarray(np.concatenate([p.ravel() for p in planes]).reshape(-1, width),
                                      format=pixel_format)


@functools.lru_cache(maxsize=16)
def _gray_of_luma(pixel_format: str, colorspace, color_range) -> np.ndarray:
    """swscale's YUV -> gray as a table of the luma (it reads nothing else): the 256 luma values converted by
    swscale itself, once per format and range."""
    sx, sy = _PLANAR_YUV[pixel_format]
    luma = np.arange(256, dtype=np.uint8).reshape(16, 16)
    chroma = np.full((16 // sy, 16 // sx), 128, np.uint8)
    ramp = _frame_of_planes([luma, chroma, chroma], pixel_format)
    ramp.colorspace, ramp.color_range = colorspace, color_range
    return ramp.to_ndarray(format="gray").ravel()


def frame_region(frame: av.VideoFrame, region: tuple[int, int, int, int], fmt: str) -> tuple[np.ndarray, int, int]:
    """The pixels of `frame` inside region = (x0, y0, x1, y1) (clipped to the frame) as `fmt` ("gray" or
    "rgb24"), and the (x, y) of the array's top-left corner in the frame.

    Converting only the region costs its area instead of the frame's: at 1080p a mouth or face is a few
    percent of the frame. The region is widened to an even origin and whole chroma blocks, cut from the decoder's planes and
    converted by the same swscale call as a whole frame (gray: through the table of swscale's own luma ->
    gray, the one thing it reads): byte for byte the pixels of
    `frame.to_ndarray(format=fmt)[y0:y1, x0:x1]` (swscale's same-size YUV -> RGB/gray is per pixel, each
    taking the chroma sample of its block). Other pixel formats convert the whole frame and slice it.
    """
    width, height = frame.width, frame.height
    x0, y0, x1, y1 = (int(v) for v in region)
    x0, y0 = min(max(x0, 0), width - 1), min(max(y0, 0), height - 1)
    x1, y1 = min(max(x1, x0 + 1), width), min(max(y1, y0 + 1), height)  # at least one pixel
    x0, y0 = x0 - x0 % 2, y0 - y0 % 2  # an even origin: shifting by it keeps round-half-even ties of a shifted box
    sub = _PLANAR_YUV.get(frame.format.name)
    if sub is not None and fmt == "gray":  # the luma alone: no chroma blocks to keep whole
        luma = np.frombuffer(frame.planes[0], np.uint8).reshape(frame.planes[0].height, -1)
        return cv2.LUT(luma[y0:y1, x0:x1], _gray_of_luma(frame.format.name, frame.colorspace, frame.color_range)), x0, y0
    if sub is not None:
        sx, sy = sub
        x1, y1 = x1 + (-x1) % sx, y1 + (-y1) % sy
    if sub is None or x1 > width or y1 > height:  # an odd frame edge: no whole chroma block there
        return frame.to_ndarray(format=fmt)[y0:y1, x0:x1], x0, y0
    planes = []
    for index, plane in enumerate(frame.planes[:3]):
        step_x, step_y = (1, 1) if index == 0 else (sx, sy)
        rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        planes.append(rows[y0 // step_y:y1 // step_y, x0 // step_x:x1 // step_x])
    small = _frame_of_planes(planes, frame.format.name)
    small.colorspace, small.color_range = frame.colorspace, frame.color_range
    return small.to_ndarray(format=fmt), x0, y0


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
