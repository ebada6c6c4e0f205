"""Probe a media file with PyAV: streams, rates, sizes, duration, and whether the frame rate is constant."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np


class ProbeError(Exception):
    """The file cannot be read as media; the message is in plain words."""


@dataclass
class ProbeInfo:
    duration: float | None  # seconds (container duration, else longest stream)
    has_video: bool
    has_audio: bool
    fps: float | None  # average frame rate of the first video stream
    width: int | None
    height: int | None
    video_codec: str | None
    audio_codec: str | None
    audio_rate: int | None
    audio_channels: int | None

    def as_columns(self) -> dict:
        return asdict(self)


def probe(path: Path) -> ProbeInfo:
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise ProbeError("empty file (0 bytes)")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.error.InvalidDataError:
        raise ProbeError("not a readable video file (ffmpeg found no known format in it)") from None
    except av.error.FFmpegError as exc:
        raise ProbeError(f"cannot open as media: {exc.strerror or exc}") from None
    with container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        return ProbeInfo(
            duration=_duration(container, video, audio),
            has_video=video is not None,
            has_audio=audio is not None,
            fps=float(video.average_rate) if video is not None and video.average_rate else None,
            width=video.codec_context.width if video is not None else None,
            height=video.codec_context.height if video is not None else None,
            video_codec=video.codec_context.name if video is not None else None,
            audio_codec=audio.codec_context.name if audio is not None else None,
            audio_rate=audio.codec_context.sample_rate if audio is not None else None,
            audio_channels=audio.codec_context.channels if audio is not None else None,
        )


def _duration(container, *streams) -> float | None:
    if container.duration:
        return container.duration / av.time_base
    spans = [float(s.duration * s.time_base) for s in streams if s is not None and s.duration]
    return max(spans) if spans else None


def frame_timestamps(path: Path) -> np.ndarray:
    """Presentation times (seconds, sorted) of every video packet: a demux, no decode, so it is cheap."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pts = [p.pts for p in container.demux(stream) if p.pts is not None and p.size > 0]
        return np.sort(np.asarray(pts, dtype=np.float64)) * float(stream.time_base)


def is_constant_rate(timestamps: np.ndarray, fps: float, tolerance: float = 1e-3) -> bool:
    """True when every frame step equals 1/fps (within `tolerance` seconds)."""
    if len(timestamps) < 2:
        return False
    steps = np.diff(timestamps)
    return bool(np.all(np.abs(steps - 1.0 / fps) <= tolerance))


def count_video_packets(path: Path) -> int:
    """Frames in a constant-rate output we wrote ourselves (one packet per frame): demux only."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sum(1 for p in container.demux(stream) if p.size > 0)
