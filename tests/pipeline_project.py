"""The test pipeline project: the session's clips (tests/clips.py: the real GRID and CREMA-D clips, or demo
clips in their formats) run through the real stages, resample -> track -> align (dlib) -> crop -> collect.

The conftest fixtures `base_project`, `aligned_project` and `packed_project` build it once per test session
(benchmarks call `benchmark_project`); treat it as read-only: copy it (`copy_project`) for a test that changes it.
Track uses RetinaFace where its weights are there (the tests were first written against its boxes), else
the default dlib detector.

Corpora: `gridt` (pretrain, the 6 GRID clips, train and val splits) and `cremadt` (eval, the 3 CREMA-D
clips, one of them again under a dotted, non-ASCII name with a space, and a test pattern without a face,
which the track stage fails for real: "no face found"). The odd name lives in the eval corpus so that the
pretraining corpus holds 6 distinct clips: a duplicate there would be a second correct answer in the
retrieval checks.
"""
from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import shutil
import tempfile
from pathlib import Path

import yaml

from clips import SHARED_ABSENT, Clips, shared_clips

REPO = Path(__file__).resolve().parents[1]
ODD_NAME = "ström.talk v1.flv"  # dotted, non-ASCII, with a space: must survive into the shards
NO_FACE = "noface.flv"
CORPORA = ("gridt", "cremadt")

PARAMS = """\
corpora:
  gridt:
    raw_dir: raw/grid
    pattern: '*.mpg'
    role: pretrain
    label: real
    method:
    split: {val: 0.34, test: 0.0, seed: 0, group_by: null}
  cremadt:
    raw_dir: raw/cremad
    pattern: '*.flv'
    role: eval
    label: fake
    method: Emotion
    split: {val: 0.0, test: 1.0, seed: 0, group_by: null}
resample:
  crf: 18
  preset: veryfast
  min_frames: 25
  min_side: 64
  max_missing_fraction: 0.1
align:
  backend: dlib
  max_gap: 12
  min_frames: 25
  smooth_window: 6
crop:
  maxcount: 4
  maxsize: 100000000
"""


def project_params(clips: Clips) -> str:
    """PARAMS plus the repository's own `track` section (the defaults a user runs), with the RetinaFace
    detector and its local weights where the clips come with them."""
    track = yaml.safe_load((REPO / "params.yaml").read_text())["track"]
    if clips.retinaface is None:
        return PARAMS + yaml.safe_dump({"track": {**track, "detector": "dlib"}}, sort_keys=False)
    return PARAMS + yaml.safe_dump({"track": {**track, "detector": "retinaface"},
                                    "weights": {"retinaface": str(clips.retinaface)}}, sort_keys=False)


@contextlib.contextmanager
def project_env(root: Path):
    """AVLIPS_ROOT and the working directory pointed at `root` for the duration."""
    old_env, old_cwd = os.environ.get("AVLIPS_ROOT"), os.getcwd()
    os.environ["AVLIPS_ROOT"] = str(root)
    os.chdir(root)
    try:
        yield root
    finally:
        os.chdir(old_cwd)
        if old_env is None:
            os.environ.pop("AVLIPS_ROOT", None)
        else:
            os.environ["AVLIPS_ROOT"] = old_env


@contextlib.contextmanager
def local_client():
    """An in-process dask client, one worker thread: no worker start-up or model load per process, and
    threads share os.environ, so AVLIPS_ROOT reaches the work. (test_align's CLI test covers processes.)"""
    from distributed import Client

    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
        yield client


def make_faceless(path: Path) -> Path:
    """2 s of ffmpeg's moving test pattern with a tone: a valid video the track stage finds no face in."""
    from preprocess.ffmpeg import run_ffmpeg

    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2",
                "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=2",
                "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", str(path)])
    return path


def build(root: Path, clips: Clips) -> Path:
    """The raw folders, params and source manifests, then resample and track on both corpora."""
    from pipeline.manifest import scan_corpus, write_manifest
    from pipeline.corpora import get_corpus, load_params
    from pipeline import stages

    (root / "raw" / "grid").mkdir(parents=True)
    (root / "raw" / "cremad").mkdir(parents=True)
    for clip in clips.grid:
        (root / "raw" / "grid" / clip.name).symlink_to(clip)
    for clip in clips.cremad:
        (root / "raw" / "cremad" / clip.name).symlink_to(clip)
    (root / "raw" / "cremad" / ODD_NAME).symlink_to(clips.cremad[0])  # its twin: the same clip
    make_faceless(root / "raw" / "cremad" / NO_FACE)
    (root / "params.yaml").write_text(project_params(clips))
    (root / "data_manifests").mkdir()
    with project_env(root), local_client() as client:
        params = load_params()
        for name in CORPORA:
            write_manifest(scan_corpus(get_corpus(name, params)), root / "data_manifests" / f"{name}.parquet")
            stages.run("resample", name, client)
            stages.run("track", name, client)
    return root


def align(root: Path) -> Path:
    """The align stage (dlib) on both corpora of a built project, in place."""
    from pipeline import stages

    with project_env(root), local_client() as client:
        for name in CORPORA:
            stages.run("align", name, client)
    return root


def pack(aligned: Path, root: Path) -> Path:
    """A copy of an aligned project at `root`, with shards (crop) and the collect index."""
    from pipeline import collect
    from pipeline import stages

    copy_project(aligned, root)
    with project_env(root), local_client() as client:
        for name in CORPORA:
            stages.run("crop", name, client)
        collect.main([])
    return root


def benchmark_clips() -> Clips:
    """The real clips for the benchmarks (their figures are measured on them); exits where ../shared is absent."""
    clips = shared_clips()
    if clips is None:
        raise SystemExit(SHARED_ABSENT)
    return clips


@functools.lru_cache(maxsize=None)
def benchmark_project() -> Path:
    """The packed project of the real clips in a scratch folder removed at exit (the tests use the conftest
    fixtures instead)."""
    top = Path(tempfile.mkdtemp(prefix="avlips-bench-project-"))
    atexit.register(shutil.rmtree, top, ignore_errors=True)
    return pack(align(build(top / "aligned", benchmark_clips())), top / "packed")


def first_tracked_video(corpus: str = "gridt", frames: int = 30):
    """(manifest row, first `frames` tracked boxes (column -> array), resampled video, audio) of the corpus's
    first video by id. Call inside project_env(root)."""
    import pandas as pd

    from preprocess import paths
    from preprocess.resample import stage as resample
    from preprocess.track import stage as track

    manifest = pd.read_parquet(paths.source_manifest_path(corpus)).sort_values("video_id")
    row = manifest.iloc[0].to_dict()
    boxes = pd.read_parquet(track.output_paths(corpus, row["video_id"])[0]).iloc[:frames]
    columns = {name: boxes[name].to_numpy() for name in boxes}  # as align's stage reads them
    return (row, columns, *resample.output_paths(corpus, row["video_id"]))


def copy_project(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def collected_shards(root: Path, role: str, *splits: str) -> list:
    """The shards of a packed project that its collect index `data/collect/<role>.json` lists under
    `splits`, read with the trainer's own reader, as ShardInfo with absolute paths."""
    from train.data import ShardInfo, read_index

    index = root / "data" / "collect" / f"{role}.json"
    return [ShardInfo(str(root / s.path), s.samples) for split in splits for s in read_index(index, split)]


def pretrain_shards(root: Path, *splits: str) -> list:
    """The pretraining corpus (the 6 GRID clips) as the pipeline packed them."""
    return collected_shards(root, "pretrain", *splits)


def write_index(path: Path, **roles: list) -> Path:
    """A shard index in the collect stage's format ({split: [{path, sha256, samples}]}) for `roles`."""
    from preprocess.fileio import sha256_file

    path.write_text(json.dumps({role: [{"path": s.path, "sha256": sha256_file(Path(s.path)), "samples": s.samples}
                                       for s in shards] for role, shards in roles.items()}))
    return path


def read_samples(shards: list, decode: bool = True) -> list[dict]:
    """Every sample of `shards` in order, read by WebDataset itself (independent of train.data):
    decoded arrays and json, or the raw member bytes with decode=False."""
    import webdataset as wds

    ds = wds.WebDataset([s.path for s in shards], shardshuffle=False, empty_check=False)
    return list(ds.decode() if decode else ds)


def npy_bytes(a) -> bytes:
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def repack(samples: list[dict], sizes: list[int], out_dir: Path) -> list:
    """Raw pipeline samples (read_samples(..., decode=False)) rewritten byte for byte into shards of
    `sizes` samples, for shard layouts the pipeline does not make by itself."""
    import webdataset as wds

    from train.data import ShardInfo

    assert sum(sizes) == len(samples)
    out_dir.mkdir(parents=True, exist_ok=True)
    shards, start = [], 0
    for i, n in enumerate(sizes):
        path = out_dir / f"train-{i:06d}.tar"
        with wds.TarWriter(str(path)) as writer:
            for sample in samples[start:start + n]:
                writer.write({k: v for k, v in sample.items() if k == "__key__" or not k.startswith("__")})
        shards.append(ShardInfo(str(path), n))
        start += n
    return shards
