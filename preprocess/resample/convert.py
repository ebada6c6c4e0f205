"""resample: any source video to constant 25 fps video and 16 kHz mono audio, exactly 640 samples a frame.

One ffmpeg run decodes the source once and writes both outputs. When the source is already constant
25 fps and no larger than `max_short_side`, its video is copied untouched (no generation loss); otherwise the
`fps` filter makes it constant rate (exact frame count, unlike `-r` on variable-rate input), a larger one is
scaled down (area filter) to that shorter side, and x264 re-encodes it. The cap is for speed: every later
stage decodes the video again, and a 96x96 mouth crop from a 720p talking head is still a downscale
(its window spans about 150 px there; 1080p adds only pixels that the warp drops).
"""
from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import av

from preprocess.fileio import atomic_path, scratch_path
from preprocess.records import SKIPPED, StageFailure
from preprocess.ffmpeg import FFmpegError, run_ffmpeg
from preprocess.contract import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME  # noqa: F401
from preprocess.probe import ProbeError, count_video_packets, frame_timestamps, is_constant_rate, probe

_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class ResampleParams:
    crf: int = 18  # x264 quality when re-encoding (lower is better)
    preset: str = "ultrafast"  # x264's fastest; at 720p, one core: 6.9 ms a frame (superfast 10.4, veryfast 14.7)
    min_frames: int = 25  # one 1-second clip
    min_side: int = 64  # pixels; smaller faces cannot give a 96x96 mouth crop worth training on
    max_short_side: int | None = 720  # pixels; larger sources are scaled down to it (None: every size kept)
    max_missing_fraction: float = 0.1  # decoded frames below (1 - this) x probed duration: truncated
    require_audio: bool = True  # pretraining needs speech; detection corpora may lack audio


def resample_video(src: Path, video_out: Path, audio_out: Path, params: ResampleParams) -> dict:
    """Write `video_out` (.mkv) and, when the source has audio, `audio_out` (.wav). Return figures.

    Raises StageFailure with a plain-words reason for every input it cannot or should not convert.
    """
    try:
        info = probe(src)
    except ProbeError as exc:
        raise StageFailure(str(exc)) from None
    if not info.has_video:
        raise StageFailure("no video stream (audio-only file)")
    if min(info.width or 0, info.height or 0) < params.min_side:
        raise StageFailure(
            f"resolution {info.width}x{info.height} is below the minimum of {params.min_side} px",
            status=SKIPPED,
        )
    if not info.has_audio and params.require_audio:
        raise StageFailure("no audio track: pretraining corpora need speech audio", status=SKIPPED)

    downscale = too_large(info.width, info.height, params.max_short_side)
    copy_video = not downscale and _is_constant_25fps(src, info.fps)
    with atomic_path(video_out) as tmp_video, scratch_path(audio_out.with_suffix(".raw")) as tmp_raw:
        # One thread per ffmpeg: parallelism comes from dask running one video per core.
        args = ["-threads", "1", "-i", str(src), *_video_args(copy_video, downscale, params), str(tmp_video)]
        if info.has_audio:
            args += _audio_args(tmp_raw)
        try:
            log = run_ffmpeg(args)
        except FFmpegError as exc:
            raise StageFailure(f"ffmpeg could not convert it: {exc.message}") from None

        n_frames = count_video_packets(tmp_video)
        _check_complete(n_frames, info.duration, params, log)
        if n_frames < params.min_frames:
            raise StageFailure(
                f"too short: {n_frames} frames ({n_frames / FPS:.2f} s); at least {params.min_frames} needed",
                status=SKIPPED,
            )
        details = {"n_frames": n_frames, "video_copied": copy_video, "downscaled": downscale,
                   "has_audio": info.has_audio}
        if not info.has_audio:
            details["note"] = "kept without audio: no audio track (the detector needs video only)"
        if info.has_audio:
            start_shift = round(_first_frame_time(tmp_video) * SAMPLE_RATE)
            details.update(_write_wav_exact(tmp_raw, audio_out, n_frames * SAMPLES_PER_FRAME, start_shift))
        # video_out is renamed into place when this block exits, after the audio: the status record
        # (written by the runner afterwards) is what marks the video finished.
    details.update({f"source_{k}": v for k, v in info.as_columns().items()})
    return details


def _is_constant_25fps(src: Path, fps: float | None) -> bool:
    if fps is None or abs(fps - FPS) > 1e-3:
        return False
    return is_constant_rate(frame_timestamps(src), FPS)


def too_large(width: int | None, height: int | None, max_short_side: int | None) -> bool:
    return bool(max_short_side) and min(width or 0, height or 0) > max_short_side


def _video_args(copy_video: bool, downscale: bool, params: ResampleParams) -> list[str]:
    common = ["-map", "0:v:0", "-an", "-sn", "-dn", "-map_metadata", "-1", "-map_chapters", "-1"]
    # bitexact: no random UIDs or version strings, so identical inputs give identical files.
    container = ["-fflags", "+bitexact", "-f", "matroska"]
    if copy_video:
        return [*common, "-c:v", "copy", *container]
    filters = f"fps={FPS}"
    if downscale:  # in expressions of the frame as decoded (and auto-rotated): the shorter side to the cap, even
        cap = int(params.max_short_side)
        factor = f"min(1,{cap}/min(iw,ih))"
        filters += f",scale=w='trunc(iw*{factor}/2+0.5)*2':h='trunc(ih*{factor}/2+0.5)*2':flags=area"
    encode = ["-vf", filters, "-fps_mode", "passthrough", "-c:v", "libx264", "-preset", params.preset,
              "-crf", str(params.crf), "-pix_fmt", "yuv420p", "-threads", "1", "-flags:v", "+bitexact"]
    return [*common, *encode, *container]


def _audio_args(raw_out: Path) -> list[str]:
    # first_pts=0 pads with silence when the audio starts after the video's timeline origin.
    return ["-map", "0:a:0", "-vn", "-sn", "-dn", "-af", f"aresample={SAMPLE_RATE}:async=1:first_pts=0",
            "-ac", "1", "-c:a", "pcm_s16le", "-f", "s16le", str(raw_out)]


def _check_complete(n_frames: int, duration: float | None, params: ResampleParams, log: str) -> None:
    if not duration:
        return
    expected = duration * FPS
    if n_frames < (1.0 - params.max_missing_fraction) * expected - 1:
        hint = f" (ffmpeg: {log.strip().splitlines()[-1]})" if log.strip() else ""
        raise StageFailure(
            f"truncated or damaged: only {n_frames} of about {round(expected)} frames could be read{hint}"
        )


def _first_frame_time(video: Path) -> float:
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if packet.pts is not None:
                return max(0.0, float(packet.pts * stream.time_base))
    return 0.0


def _write_wav_exact(raw: Path, wav_out: Path, n_samples: int, start_shift: int) -> dict:
    """Stream 16-bit mono PCM from `raw` into `wav_out` holding exactly `n_samples` samples.

    The first `start_shift` samples precede the first video frame and are dropped; the end is
    trimmed or padded with silence. Bounded memory: copies in 1 MiB chunks.
    """
    decoded = raw.stat().st_size // 2
    available = max(0, decoded - start_shift)
    kept = min(available, n_samples)
    with atomic_path(wav_out) as tmp_wav, raw.open("rb") as src, wave.open(str(tmp_wav), "wb") as dst:
        dst.setnchannels(1)
        dst.setsampwidth(2)
        dst.setframerate(SAMPLE_RATE)
        src.seek(2 * start_shift)
        remaining = 2 * kept
        while remaining:
            chunk = src.read(min(_CHUNK_BYTES, remaining))
            if not chunk:
                break
            dst.writeframesraw(chunk)
            remaining -= len(chunk)
        padding = 2 * (n_samples - kept)
        while padding:
            step = min(_CHUNK_BYTES, padding)
            dst.writeframesraw(bytes(step))
            padding -= step
    return {
        "audio_samples": n_samples,
        "audio_samples_decoded": decoded,
        "audio_start_shift": start_shift,
        "audio_padded": n_samples - kept,
        "audio_trimmed": max(0, available - n_samples),
    }
