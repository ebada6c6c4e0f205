"""Corruptions for the robustness evaluation (the paper's Figure 4): DeeperForensics-1.0's perturbations.

Applied to full 25 fps frames, before any face crop (block-wise needs the whole frame: it scales with the
frame's size and does nothing below 256 px). Frames are uint8 RGB (T, H, W, 3), as preprocess.media yields
them, or grayscale (T, H, W). Four types, five levels each; level 0 is the identity (the input, untouched):
  blockwise    N grey (128) 8x8 blocks at uniformly random places, N = level's count x (shorter side // 256)
  blur         Gaussian blur, square kernel of the level's odd side, sigma = side / 6
  jpeg         downscale by the level's factor and back up, bilinear (DeeperForensics' "JPEG compression"
               is this resize artefact, not a JPEG codec)
  compression  H.264 (libx264) at the level's CRF: a re-encode of the video file (compress_file)
The level tables are DeeperForensics' (CorruptionLevels); params.yaml `robustness:` may override them.
Everything is deterministic: block positions come from (seed, frame index), x264 runs single-threaded with
the pinned ffmpeg build, so a rerun gives identical frames.
"""
from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

import av
import cv2
import numpy as np

from preprocess.ffmpeg import FFmpegError, pinned_ffmpeg_exe, run_ffmpeg
from preprocess.media import iter_frame_batches

TYPES = ("blockwise", "blur", "jpeg", "compression")
# DeeperForensics' codes (add_distortion_to_video.py --type) name the same corruptions.
ALIASES = {"bw": "blockwise", "gb": "blur", "vc": "compression"}
BLOCK = 8  # px side of one grey block
BLOCK_VALUE = 128
BLOCK_FRAME_UNIT = 256  # px of the shorter side per multiple of the level's block count
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


class CorruptionError(ValueError):
    """A corruption spec or setting that cannot be used; the message is plain words for the user."""


@dataclass(frozen=True)
class CorruptionLevels:
    """Each type's parameter at levels 1, 2, ... (severity grows with the level)."""
    blockwise: tuple[int, ...] = (16, 32, 48, 64, 80)  # 8x8 blocks per 256 px of the frame's shorter side
    blur: tuple[int, ...] = (7, 9, 13, 17, 21)  # Gaussian kernel side (odd)
    jpeg: tuple[int, ...] = (2, 3, 4, 5, 6)  # downscale factor
    compression: tuple[int, ...] = (30, 32, 35, 38, 40)  # x264 CRF

    def __post_init__(self):
        for name in TYPES:
            values = getattr(self, name)
            if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
                raise CorruptionError(f"robustness.levels.{name} must be a list of numbers, got {values!r}")
            values = tuple(values)
            if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                raise CorruptionError(f"robustness.levels.{name} must be a non-empty list of whole numbers, "
                                      f"got {list(values)}")
            _check_values(name, values)
            object.__setattr__(self, name, values)  # lists from YAML become tuples: hashable, immutable

    def count(self, type_: str) -> int:
        return len(getattr(self, type_))

    def parameter(self, corruption: Corruption) -> int:
        """The level's setting (blocks, kernel side, factor or CRF); level 0 has none."""
        table = getattr(self, corruption.type)
        if not 1 <= corruption.level <= len(table):
            raise CorruptionError(f"{corruption.type} has levels 0 to {len(table)}, not {corruption.level}")
        return table[corruption.level - 1]


def _check_values(name: str, values: tuple[int, ...]) -> None:
    rules = {
        "blockwise": (lambda v: v >= 1, "at least 1 block"),
        "blur": (lambda v: v >= 3 and v % 2 == 1, "an odd kernel side of at least 3"),
        "jpeg": (lambda v: v >= 2, "a downscale factor of at least 2"),
        "compression": (lambda v: 0 <= v <= 51, "a CRF between 0 and 51"),
    }
    ok, wanted = rules[name]
    bad = [v for v in values if not ok(v)]
    if bad:
        raise CorruptionError(f"robustness.levels.{name}: {bad} not allowed; each level needs {wanted}")
    # Compression is milder at a lower CRF, the others at a lower number: all tables must grow.
    if any(b <= a for a, b in zip(values, values[1:])):
        raise CorruptionError(f"robustness.levels.{name} must increase from level to level, got {list(values)}")


@dataclass(frozen=True)
class Corruption:
    type: str
    level: int

    def __post_init__(self):
        if self.type not in TYPES:
            raise CorruptionError(f"unknown corruption type {self.type!r}; known: {', '.join(TYPES)}")
        if not isinstance(self.level, int) or isinstance(self.level, bool) or self.level < 0:
            raise CorruptionError(f"a corruption level is a whole number from 0, not {self.level!r}")

    @classmethod
    def parse(cls, text: str, levels: CorruptionLevels | None = None) -> Corruption:
        """From "TYPE:LEVEL", e.g. "blur:3" (DeeperForensics codes such as "GB:3" work too)."""
        levels = levels or CorruptionLevels()
        name, sep, level_text = str(text).strip().partition(":")
        if not sep or not name.strip() or not level_text.strip():
            raise CorruptionError(f"a corruption is written TYPE:LEVEL (e.g. blur:3), not {text!r}; "
                                  f"types: {', '.join(TYPES)}")
        name = name.strip().lower()
        name = ALIASES.get(name, name)
        if name not in TYPES:
            raise CorruptionError(f"unknown corruption type {name!r} in {text!r}; known: {', '.join(TYPES)}")
        try:
            level = int(level_text.strip())
        except ValueError:
            raise CorruptionError(f"the level in {text!r} is not a whole number") from None
        top = levels.count(name)
        if not 0 <= level <= top:
            raise CorruptionError(f"{name} has levels 0 (none) to {top}, not {level}")
        return cls(name, level)

    def __str__(self) -> str:
        return f"{self.type}:{self.level}"


@dataclass(frozen=True)
class RobustnessParams:
    """params.yaml `robustness:` (strict: an unknown key is an error)."""
    types: tuple[str, ...] = TYPES  # corruptions evaluated, each at every level of its table
    levels: CorruptionLevels = field(default_factory=CorruptionLevels)
    seed: int = 0  # block-wise positions; mixed with each video's id (video_seed)
    compression_preset: str = "medium"  # x264 preset; DeeperForensics ran ffmpeg's default (medium)
    keep_crops: bool = False  # keep the corrupted mouth crops (disk) or only their scores
    max_videos_per_corpus: int = 4  # robustness stage: videos scored per eval corpus (0: all), both labels dealt

    def __post_init__(self):
        types = (self.types,) if isinstance(self.types, str) else tuple(self.types)
        unknown = [t for t in types if t not in TYPES]
        if unknown or not types or len(set(types)) != len(types):
            raise CorruptionError(f"robustness.types must list distinct types from {', '.join(TYPES)}; "
                                  f"got {list(types)}")
        object.__setattr__(self, "types", types)
        levels = self.levels
        if isinstance(levels, dict):
            known = {f.name for f in fields(CorruptionLevels)}
            extra = sorted(set(levels) - known)
            if extra:
                raise CorruptionError(f"robustness.levels: unknown type(s) {', '.join(extra)}; "
                                      f"known: {', '.join(TYPES)}")
            levels = CorruptionLevels(**levels)  # types left out keep DeeperForensics' table
        elif levels is None:
            levels = CorruptionLevels()
        object.__setattr__(self, "levels", levels)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise CorruptionError(f"robustness.seed must be a whole number >= 0, not {self.seed!r}")
        if not isinstance(self.max_videos_per_corpus, int) or isinstance(self.max_videos_per_corpus, bool) \
                or self.max_videos_per_corpus < 0:
            raise CorruptionError(f"robustness.max_videos_per_corpus must be a whole number >= 0 (0: all), not "
                                  f"{self.max_videos_per_corpus!r}")
        if self.compression_preset not in PRESETS:
            raise CorruptionError(f"robustness.compression_preset: {self.compression_preset!r} is not an x264 "
                                  f"preset ({', '.join(PRESETS)})")

    def corruptions(self) -> list[Corruption]:
        """Every evaluated type at every level from 1 (level 0, the clean input, is shared by all)."""
        return [Corruption(t, level) for t in self.types for level in range(1, self.levels.count(t) + 1)]


def video_seed(seed: int, video_id: str) -> int:
    """A per-video seed: block positions differ between videos yet are fixed for each."""
    digest = hashlib.sha256(f"{seed}:{video_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


# ---- per-frame corruptions: pure, new arrays, the input untouched -------------------------------------------

def blockwise_count(height: int, width: int, blocks: int) -> int:
    """Blocks pasted on a frame of this size: none below 256 px on the shorter side (as DeeperForensics)."""
    return min(height, width) // BLOCK_FRAME_UNIT * blocks


def block_positions(height: int, width: int, blocks: int, seed: int, frame_index: int) -> np.ndarray:
    """(n, 2) top-left (y, x) of each block, uniform over places where the block fits.

    Drawn in order from a generator of (seed, frame index): a level's blocks are the first blocks of every
    higher level, so severity grows with the level on each frame (not only on average)."""
    n = blockwise_count(height, width, blocks)
    rng = np.random.default_rng([seed, frame_index])
    return rng.integers(0, [height - BLOCK, width - BLOCK], size=(n, 2))


def blockwise(frame: np.ndarray, blocks: int, seed: int, frame_index: int) -> np.ndarray:
    out = frame.copy()
    for y, x in block_positions(frame.shape[0], frame.shape[1], blocks, seed, frame_index):
        out[y:y + BLOCK, x:x + BLOCK] = BLOCK_VALUE
    return out


def gaussian_blur(frame: np.ndarray, kernel: int) -> np.ndarray:
    return cv2.GaussianBlur(frame, (kernel, kernel), kernel / 6.0)


def resize_artefact(frame: np.ndarray, factor: int) -> np.ndarray:
    """DeeperForensics' "JPEG" level: shrink by `factor` and blow back up (bilinear both ways)."""
    height, width = frame.shape[:2]
    small = cv2.resize(frame, (max(1, width // factor), max(1, height // factor)), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


# ---- compression: through x264 and back ---------------------------------------------------------------------

def _check_preset(preset: str) -> None:
    if preset not in PRESETS:
        raise CorruptionError(f"{preset!r} is not an x264 preset ({', '.join(PRESETS)})")


def _x264_args(crf: int, preset: str, width: int, height: int) -> list[str]:
    # yuv420p needs even sides: pad odd ones by a pixel (cropped off again after decoding).
    pad = ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"] if width % 2 or height % 2 else []
    return [*pad, "-an", "-sn", "-dn", "-c:v", "libx264", "-preset", preset, "-crf", str(crf),
            "-pix_fmt", "yuv420p", "-threads", "1", "-flags:v", "+bitexact", "-fflags", "+bitexact",
            "-f", "matroska"]


def compress_video(video: Path, crf: int, preset: str = "medium", batch: int = 64, gray: bool = False,
                   workdir: Path | None = None) -> Iterator[np.ndarray]:
    """Re-encode a video file's first video stream with libx264 at `crf` (DeeperForensics' way: the file,
    not decoded frames); yield its decoded frames as preprocess.media does, in batches of `batch`."""
    _check_preset(preset)
    with tempfile.TemporaryDirectory(prefix="avlips-x264-", dir=workdir) as tmp:
        encoded = Path(tmp) / "encoded.mkv"
        width, height = compress_file(video, encoded, crf, preset)
        for frames in iter_frame_batches(encoded, batch=batch, gray=gray):
            yield frames[:, :height, :width]


def compress_file(video: Path, out: Path, crf: int, preset: str = "medium") -> tuple[int, int]:
    """Re-encode a video file's first video stream with libx264 at `crf` into `out` (Matroska); returns the
    source's (width, height): an odd side is padded by a pixel in `out`, to be cropped off after decoding."""
    _check_preset(preset)
    width, height = _size(video)
    try:
        run_ffmpeg(["-threads", "1", "-i", str(video), "-map", "0:v:0", "-fps_mode", "passthrough",
                    *_x264_args(crf, preset, width, height), str(out)], exe=pinned_ffmpeg_exe())
    except FFmpegError as exc:
        raise FFmpegError(f"x264 at CRF {crf} could not re-encode {Path(video).name}: {exc.message}") from None
    return width, height


def _size(video: Path) -> tuple[int, int]:
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.width, stream.codec_context.height


# ---- the one entry point ------------------------------------------------------------------------------------

def apply(frames: np.ndarray | Iterable[np.ndarray], corruption: Corruption, seed: int = 0,
          levels: CorruptionLevels | None = None, start: int = 0):
    """`corruption` on full 25 fps frames: a (T, H, W[, 3]) uint8 array gives an array, an iterable of such
    batches (preprocess.media.iter_frame_batches) gives an iterator of batches of the same sizes.

    Level 0 returns `frames` itself. `seed` fixes the block positions (pass video_seed(...) for per-video
    blocks); `start` is the index of the first frame in the video, so a video corrupted in pieces gets the
    same blocks as in one go. Compression is not a per-frame corruption: it re-encodes the video file
    (compress_file, compress_video), as DeeperForensics does."""
    if corruption.level == 0:
        return frames
    if corruption.type == "compression":
        raise CorruptionError("compression re-encodes the video file, not decoded frames: use "
                              "preprocess.corrupt.compress_file or compress_video")
    parameter = (levels or CorruptionLevels()).parameter(corruption)
    if isinstance(frames, np.ndarray):
        if frames.ndim not in (3, 4) or frames.dtype != np.uint8:
            raise CorruptionError(f"expected uint8 frames (T, H, W, 3) or (T, H, W), got {frames.dtype} "
                                  f"{frames.shape}")
        if len(frames) == 0:
            return frames.copy()
        return np.concatenate(list(_apply_batches([frames], corruption.type, parameter, seed, start)))
    return _apply_batches(frames, corruption.type, parameter, seed, start)


def _apply_batches(batches: Iterable[np.ndarray], type_: str, parameter: int, seed: int,
                   start: int) -> Iterator[np.ndarray]:
    index = start
    for batch in batches:
        if type_ == "blockwise":
            out = np.stack([blockwise(f, parameter, seed, index + i) for i, f in enumerate(batch)]) \
                if len(batch) else batch.copy()
        elif type_ == "blur":
            out = np.stack([gaussian_blur(f, parameter) for f in batch]) if len(batch) else batch.copy()
        else:
            out = np.stack([resize_artefact(f, parameter) for f in batch]) if len(batch) else batch.copy()
        index += len(batch)
        yield out
