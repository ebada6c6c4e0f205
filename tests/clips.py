"""The talking-face clips and weights the tests run on.

Where ../shared is there: the real GRID and CREMA-D clips of ../shared/testdata and the weights of
../shared/weights (CI has them). Where it is not (a fresh clone), the project's demo generator (preprocess/demo:
a face photo animated by speech it synthesises, the mouth opening with the speech) makes clips in the same
shapes and formats, so the same tests run the same code on real talking heads:

- `grid`: 6 speakers (demo identities), one clip each, MPEG-1 360x288 at 25 fps, 75 frames (3 s), MP2 audio
  44.1 kHz stereo, lips and audio in sync;
- `cremad`: 3 clips of one speaker, Flash video (Sorenson Spark) 480x360 at 30 fps, 2 s, MP3 44.1 kHz: not
  25 fps, so they exercise frame-rate conversion.

AVLIPS_TEST_NO_SHARED=1 makes the tests behave as if ../shared were absent (CI runs the suite both ways).
What cannot be made here (the RetinaFace and BlazeFace weights, facts only the real files have) skips with
SHARED_ABSENT.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NO_SHARED_ENV = "AVLIPS_TEST_NO_SHARED"
SHARED = REPO.parent / "shared"
TESTDATA = SHARED / "testdata"
RETINAFACE = SHARED / "weights" / "retinaface" / "retinaface_mobilenet0.25.pth"
BLAZEFACE = SHARED / "weights" / "blazeface"
HAVE_SHARED = os.environ.get(NO_SHARED_ENV, "") in ("", "0") and RETINAFACE.is_file() and \
    any((TESTDATA / "grid").glob("*.mpg"))
SHARED_ABSENT = f"needs {SHARED} (real GRID/CREMA-D clips, RetinaFace/BlazeFace weights), absent here" + \
    (f" ({NO_SHARED_ENV}=1)" if os.environ.get(NO_SHARED_ENV, "") not in ("", "0") else "")

GRID_SIZE, CREMAD_SIZE = (360, 288), (480, 360)  # (width, height) of the real files
GRID_SECONDS, CREMAD_SECONDS, CREMAD_FPS = 3.0, 2.0, 30


@dataclass(frozen=True)
class Clips:
    grid: tuple[Path, ...]  # 6 speakers, 25 fps, 75 frames each
    cremad: tuple[Path, ...]  # 3 clips of one speaker, not 25 fps
    real: bool  # the shared GRID/CREMA-D files; False: made by the demo generator
    retinaface: Path | None  # the RetinaFace weights, where ../shared has them
    blazeface: Path | None  # the BlazeFace weights folder (blazeface.pth, anchors.npy), likewise


def shared_clips() -> Clips | None:
    """The real clips and weights of ../shared, or None where they are absent (or AVLIPS_TEST_NO_SHARED=1)."""
    if not HAVE_SHARED:
        return None
    return Clips(tuple(sorted((TESTDATA / "grid").glob("*.mpg"))), tuple(sorted((TESTDATA / "cremad").glob("*.flv"))),
                 True, RETINAFACE, BLAZEFACE if (BLAZEFACE / "blazeface.pth").is_file() else None)


def demo_clips(folder: Path) -> Clips:
    """Make the GRID- and CREMA-D-shaped clips with the demo generator in `folder` (about 20 s)."""
    from preprocess.demo.plan import Clip, DemoCorpus, DemoParams, render_clip

    folder.mkdir(parents=True, exist_ok=True)
    grid = DemoParams(seconds=GRID_SECONDS, fps=25, size=GRID_SIZE[0], corpora={"grid": DemoCorpus()})
    cremad = DemoParams(seconds=CREMAD_SECONDS, fps=CREMAD_FPS, size=CREMAD_SIZE[0], corpora={"cremad": DemoCorpus()})
    grid_paths = []
    for identity in range(6):  # GRID-like names: the first two letters differ per speaker
        audio, videos, _ = render_clip(grid, Clip("grid", identity, 0, ()))
        grid_paths.append(_write(folder / f"s{identity}talk.mpg", videos["real"], GRID_SIZE, 25, audio, grid,
                                 ["-c:v", "mpeg1video", "-q:v", "2", "-c:a", "mp2", "-b:a", "192k", "-f", "mpeg"]))
    cremad_paths = []
    for index, emotion in enumerate(("ang", "hap", "neu")):  # one speaker (identity 6), three utterances
        audio, videos, _ = render_clip(cremad, Clip("cremad", 6, index, ()))
        cremad_paths.append(_write(folder / f"actor_{emotion}.flv", videos["real"], CREMAD_SIZE, CREMAD_FPS, audio,
                                   cremad, ["-c:v", "flv", "-q:v", "3", "-c:a", "libmp3lame",
                                            "-b:a", "128k", "-f", "flv"]))
    return Clips(tuple(grid_paths), tuple(cremad_paths), False, None, None)


def _write(path: Path, frames, size: tuple[int, int], fps: int, audio, params, codec: list[str]) -> Path:
    """Square demo frames cut to `size` (rows about the centre: the face stays whole) and the speech in stereo."""
    from preprocess.demo.writer import stereo, write_wav
    from preprocess.ffmpeg import run_ffmpeg

    width, height = size
    top = (frames.shape[1] - height) // 2
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        raw, wav = Path(tmp) / "frames.rgb", Path(tmp) / "audio.wav"
        raw.write_bytes(frames[:, top:top + height, :width].tobytes())
        write_wav(wav, stereo(audio, params.sample_rate), params.sample_rate)
        run_ffmpeg(["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps), "-i", str(raw),
                    "-i", str(wav), "-threads", "1", *codec, "-shortest", str(path)])
    return path
