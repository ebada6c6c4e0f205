"""Writing a demo video: H.264 and 16-bit PCM (44.1 kHz stereo) in Matroska, with the same bytes and mtime on
every run.

Why these choices: x264 on one thread is bit-exact on every CPU, and PCM has no float encoder whose SIMD path
might change the last bits from machine to machine (AAC's may); the ffmpeg binary is the pinned wheel's, not
whatever is on PATH; bit-exact muxing leaves out version strings and random ids.
"""
from __future__ import annotations

import os
import tempfile
import wave
from pathlib import Path

import numpy as np

from preprocess.ffmpeg import pinned_ffmpeg_exe, run_ffmpeg
from preprocess.fileio import atomic_path

# 2020-01-01 00:00:00 UTC: every demo file gets this mtime, so a source manifest (which records mtime_ns)
# made from the files is the same from run to run.
FIXED_MTIME_NS = 1_577_836_800 * 10**9
_BITEXACT = ["-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact", "-map_metadata", "-1"]


def stereo(audio: np.ndarray, rate: int) -> np.ndarray:
    """Two slightly different channels (level and a 0.3 ms delay), so a downmix does real work."""
    delay = int(round(0.0003 * rate))
    right = np.concatenate([np.zeros(delay, audio.dtype), audio[:len(audio) - delay]])
    return np.stack([audio * 0.95, right * 0.8], axis=1)


def write_wav(path: Path, audio: np.ndarray, rate: int) -> None:
    """float (n,) or (n, channels) in [-1, 1] to 16-bit PCM."""
    pcm = np.clip(np.round(np.asarray(audio) * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1 if pcm.ndim == 1 else pcm.shape[1])
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())


def write_video(path: Path, frames: np.ndarray, fps: int, audio: np.ndarray, rate: int, crf: int = 20) -> None:
    """frames uint8 (T, H, W, 3) RGB, audio float (n,) mono; a Matroska file written atomically, mtime
    FIXED_MTIME_NS."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t, h, w, _ = frames.shape
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".demo-") as tmp, atomic_path(path) as out:
        raw, wav = Path(tmp) / "frames.rgb", Path(tmp) / "audio.wav"
        raw.write_bytes(np.ascontiguousarray(frames).tobytes())
        write_wav(wav, stereo(audio, rate), rate)
        run_ffmpeg(["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", str(raw),
                    "-i", str(wav), "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf), "-threads", "1",
                    "-pix_fmt", "yuv420p", "-c:a", "pcm_s16le", *_BITEXACT, "-shortest", "-f", "matroska", str(out)],
                   exe=pinned_ffmpeg_exe())
        os.utime(out, ns=(FIXED_MTIME_NS, FIXED_MTIME_NS))  # kept by the rename
