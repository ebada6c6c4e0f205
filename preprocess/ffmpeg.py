"""The one place we call the ffmpeg program: argument lists only, never a shell string.

A system ffmpeg on PATH is preferred; otherwise the static binary shipped by the imageio-ffmpeg package,
so set-up needs pip alone.
"""
from __future__ import annotations

import errno
import functools
import os
import shutil
import subprocess

# ffmpeg prints the C library's message for a write that failed: a full or read-only disk is no fault of the
# input, so it is raised as the OSError Python's own write would raise (fileio.writing_into names the folder)
OUT_OF_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


class FFmpegError(RuntimeError):
    """ffmpeg exited non-zero; `message` holds the last lines it printed."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@functools.cache
def ffmpeg_exe() -> str:
    system = shutil.which("ffmpeg")
    if system:
        return system
    import imageio_ffmpeg  # pip-installed fallback

    return imageio_ffmpeg.get_ffmpeg_exe()


@functools.cache
def pinned_ffmpeg_exe() -> str:
    """The ffmpeg build of the pinned imageio-ffmpeg wheel, whatever is on PATH: for files whose bytes must
    not depend on the machine (the generated demo corpus)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def run_ffmpeg(args: list[str], timeout: float | None = None, exe: str | None = None) -> str:
    """Run ffmpeg (`exe`, default ffmpeg_exe()) with `args` (no program name); return its stderr log.
    Raise FFmpegError on failure (OSError when it could not write for want of room: OUT_OF_ROOM)."""
    cmd = [exe or ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    log = proc.stderr.decode("utf-8", errors="replace")
    if proc.returncode != 0:
        for code in OUT_OF_ROOM:
            if os.strerror(code) in log:
                raise OSError(code, f"{os.strerror(code)} (ffmpeg: {last_lines(log)})")
        raise FFmpegError(last_lines(log) or f"ffmpeg exited with code {proc.returncode}")
    return log


def last_lines(log: str, n: int = 3) -> str:
    lines = [line.strip() for line in log.strip().splitlines() if line.strip()]
    return " | ".join(lines[-n:])
