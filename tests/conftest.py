"""Shared fixtures: the session's talking-face clips (real ones from ../shared, else made by the demo
generator), the test pipeline project built from them, a scratch project root, a small dask cluster; and a
base temp folder of its own for every pytest run."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

import pipeline_project
from clips import HAVE_SHARED, SHARED_ABSENT, TESTDATA, Clips, demo_clips, shared_clips
from preprocess.ffmpeg import run_ffmpeg

REPO = Path(__file__).resolve().parents[1]


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    # pytest's default base temp (/tmp/pytest-of-USER/pytest-N) is shared by every run of the user, and a run
    # prunes the older ones, even those of a run still going: each run here gets a folder of its own, removed at
    # its end (--basetemp still chooses one).
    if not config.option.basetemp:
        config.option.basetemp = tempfile.mkdtemp(prefix="avlips-pytest-")
        config.add_cleanup(lambda: shutil.rmtree(config.option.basetemp, ignore_errors=True))


def pytest_report_header(config):
    return f"test clips: {'real, from ' + str(TESTDATA) if HAVE_SHARED else 'made by the demo generator'}"


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> Clips:
    """The real GRID/CREMA-D clips where ../shared is there, else demo clips in the same formats (made once)."""
    return shared_clips() or demo_clips(tmp_path_factory.mktemp("demo-clips"))


@pytest.fixture(scope="session")
def testdata() -> Path:
    """../shared/testdata, for the few checks of facts only the real files have."""
    if not HAVE_SHARED:
        pytest.skip(SHARED_ABSENT)
    return TESTDATA


@pytest.fixture(scope="session")
def retinaface(clips) -> Path:
    if clips.retinaface is None:
        pytest.skip(SHARED_ABSENT)
    return clips.retinaface


@pytest.fixture(scope="session")
def blazeface(clips) -> Path:
    """The BlazeFace weights folder: an independent face detector to check boxes against."""
    if clips.blazeface is None:
        pytest.skip(SHARED_ABSENT)
    return clips.blazeface


@pytest.fixture(scope="session")
def base_project(clips, tmp_path_factory) -> Path:
    """The test pipeline project after resample and track (pipeline_project.build); read-only: copy it to
    change it."""
    return pipeline_project.build(tmp_path_factory.mktemp("pipeline") / "project", clips)


@pytest.fixture(scope="session")
def aligned_project(base_project) -> Path:
    """base_project plus the align stage, in place; read-only."""
    return pipeline_project.align(base_project)


@pytest.fixture(scope="session")
def packed_project(aligned_project, tmp_path_factory) -> Path:
    """A copy of aligned_project with shards (crop) and the collect index; read-only."""
    return pipeline_project.pack(aligned_project, tmp_path_factory.mktemp("packed") / "project")


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
