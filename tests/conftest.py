"""Shared fixtures: the real clips beside the project, a scratch project root, a small dask cluster."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from preprocess.ffmpeg import run_ffmpeg

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TESTDATA = SHARED / "testdata"
WEIGHTS = SHARED / "weights"
GRID_CLIPS = sorted((TESTDATA / "grid").glob("*.mpg"))
CREMAD_CLIPS = sorted((TESTDATA / "cremad").glob("*.flv"))
# Tests on the real clips and weights beside the project skip where that folder is absent (CI has it); the
# rest, the demo pipeline's end-to-end test included, need nothing but the pip install.
SHARED_ABSENT = f"needs the real test clips in {TESTDATA}, which this machine does not have (CI does)"


@pytest.fixture(scope="session")
def testdata() -> Path:
    if not GRID_CLIPS:
        pytest.skip(SHARED_ABSENT)
    return TESTDATA


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """An empty project root holding the repository's params.yaml (without its corpora)."""
    root = tmp_path / "project"
    (root / "data_manifests").mkdir(parents=True)
    params = (REPO / "params.yaml").read_text()
    head, _, _ = params.partition("corpora:")
    rest = params[params.index("\nresample:"):]
    (root / "params.yaml").write_text(head + "corpora: {}\n" + rest)
    monkeypatch.setenv("AVLIPS_ROOT", str(root))
    monkeypatch.chdir(root)
    return root


@pytest.fixture(scope="session")
def dask_client():
    from pipeline.cluster import dask_client as make_client

    with make_client(workers=2) as client:
        yield client


def make_video(path: Path, seconds: float = 2.0, fps: str = "25", size: str = "160x120",
               audio_rate: int | None = 44100, channels: int = 2, extra: list[str] = ()) -> Path:
    """A synthetic test video (moving test pattern + tone) made with ffmpeg's lavfi sources."""
    path.parent.mkdir(parents=True, exist_ok=True)
    args = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={seconds}"]
    if audio_rate:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={audio_rate}:duration={seconds}",
                 "-ac", str(channels), "-c:a", "aac"]
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", *extra, str(path)]
    run_ffmpeg(args)
    return path


def copy_clip(src: Path, folder: Path, name: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / (name or src.name)
    shutil.copyfile(src, dst)
    return dst
