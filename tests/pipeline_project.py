"""The test pipeline project: the shared clips run through the real stages, resample -> track (RetinaFace)
-> align (dlib) -> crop -> collect, once per test session.

Imported by the align / crop / shards / inspect / pretrain / loader tests (and benchmarks). Each project is
built once per test process in a temporary folder and must be treated as read-only: copy it
(`copy_project`) for a test that changes it.

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

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TESTDATA = SHARED / "testdata"
RETINAFACE = SHARED / "weights" / "retinaface" / "retinaface_mobilenet0.25.pth"
GRID = sorted((TESTDATA / "grid").glob("*.mpg"))
CREMAD = sorted((TESTDATA / "cremad").glob("*.flv"))
ODD_NAME = "ström.talk v1.flv"  # dotted, non-ASCII, with a space: must survive into the shards
ODD_TWIN = CREMAD[0] if CREMAD else None  # the clip the odd name links to
NO_FACE = "noface.flv"
CORPORA = ("gridt", "cremadt")
# why the pipeline tests cannot run here ("" when they can)
MISSING = "" if GRID and CREMAD and RETINAFACE.exists() else \
    f"needs the real clips and RetinaFace weights in {SHARED}, which this machine does not have (CI does)"

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


def project_params() -> str:
    """PARAMS plus the repository's own `track` section (the defaults a user runs), with the RetinaFace
    detector and its local weights (the tests below were written against its boxes)."""
    track = {**yaml.safe_load((REPO / "params.yaml").read_text())["track"], "detector": "retinaface"}
    return PARAMS + yaml.safe_dump({"track": track, "weights": {"retinaface": str(RETINAFACE)}}, sort_keys=False)


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


def _scratch(prefix: str) -> Path:
    """A temporary project folder, removed when the test process exits."""
    top = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, top, ignore_errors=True)
    return top / "project"


def make_faceless(path: Path) -> Path:
    """2 s of ffmpeg's moving test pattern with a tone: a valid video the track stage finds no face in."""
    from preprocess.ffmpeg import run_ffmpeg

    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2",
                "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=2",
                "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", str(path)])
    return path


def build(root: Path) -> Path:
    """The raw folders, params and source manifests, then resample and track on both corpora."""
    from pipeline.manifest import scan_corpus, write_manifest
    from pipeline.corpora import get_corpus, load_params
    from pipeline import stages

    (root / "raw" / "grid").mkdir(parents=True)
    (root / "raw" / "cremad").mkdir(parents=True)
    for clip in GRID:
        (root / "raw" / "grid" / clip.name).symlink_to(clip)
    for clip in CREMAD:
        (root / "raw" / "cremad" / clip.name).symlink_to(clip)
    (root / "raw" / "cremad" / ODD_NAME).symlink_to(ODD_TWIN)
    make_faceless(root / "raw" / "cremad" / NO_FACE)
    (root / "params.yaml").write_text(project_params())
    (root / "data_manifests").mkdir()
    with project_env(root), local_client() as client:
        params = load_params()
        for name in CORPORA:
            write_manifest(scan_corpus(get_corpus(name, params)), root / "data_manifests" / f"{name}.parquet")
            stages.run("resample", name, client)
            stages.run("track", name, client)
    return root


@functools.lru_cache(maxsize=None)
def base_project() -> Path:
    """resample + track, built once per test process."""
    return build(_scratch("avlips-pipeline-test-"))


@functools.lru_cache(maxsize=None)
def aligned_project() -> Path:
    """base_project() plus the align stage (dlib) on both corpora; treat it as read-only."""
    from pipeline import stages

    root = base_project()
    with project_env(root), local_client() as client:
        for name in CORPORA:
            stages.run("align", name, client)
    return root


@functools.lru_cache(maxsize=None)
def packed_project() -> Path:
    """A copy of aligned_project() with shards (crop) and the collect index; treat it as read-only."""
    from pipeline import collect
    from pipeline import stages

    root = copy_project(aligned_project(), _scratch("avlips-packed-test-"))
    with project_env(root), local_client() as client:
        for name in CORPORA:
            stages.run("crop", name, client)
        collect.main([])
    return root


def first_tracked_video(corpus: str = "gridt", frames: int = 30):
    """(manifest row, first `frames` tracked boxes, resampled video, audio) of the corpus's first video by id.
    Call inside project_env(root)."""
    import pandas as pd

    from preprocess import paths
    from preprocess.resample import stage as resample
    from preprocess.track import stage as track

    manifest = pd.read_parquet(paths.source_manifest_path(corpus)).sort_values("video_id")
    row = manifest.iloc[0].to_dict()
    boxes = pd.read_parquet(track.output_paths(corpus, row["video_id"])[0]).iloc[:frames]
    return (row, boxes, *resample.output_paths(corpus, row["video_id"]))


def copy_project(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def collected_shards(role: str, *splits: str) -> list:
    """The shards of packed_project() that its collect index `data/collect/<role>.json` lists under
    `splits`, read with the trainer's own reader, as ShardInfo with absolute paths."""
    from train.data import ShardInfo, read_index

    root = packed_project()
    index = root / "data" / "collect" / f"{role}.json"
    return [ShardInfo(str(root / s.path), s.samples) for split in splits for s in read_index(index, split)]


def pretrain_shards(*splits: str) -> list:
    """The pretraining corpus (the 6 GRID clips) as the pipeline packed them."""
    return collected_shards("pretrain", *splits)


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
