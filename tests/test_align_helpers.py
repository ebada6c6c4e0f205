"""Building align/crop inputs on the real clips: resample them, then write track outputs in the track
stage's exact contract from dlib's HOG detector (the RetinaFace track stage is built separately).

Imported by the align / crop / shards / inspect tests; the project is built once per test session and
copied for tests that change it.
"""
from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TESTDATA = SHARED / "testdata"
GRID = sorted((TESTDATA / "grid").glob("*.mpg"))
CREMAD = sorted((TESTDATA / "cremad").glob("*.flv"))
ODD_NAME = "ström.talk v1.mpg"  # dotted, non-ASCII, with a space: must survive into the shards

PARAMS = """\
corpora:
  gridt:
    raw_dir: raw/grid
    pattern: '*.mpg'
    role: pretrain
    label: real
    method:
    split: {val: 0.34, test: 0.0, seed: 0, group_by:}
  cremadt:
    raw_dir: raw/cremad
    pattern: '*.flv'
    role: eval
    label: fake
    method: Emotion
    split: {val: 0.0, test: 1.0, seed: 0, group_by:}
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
    """An in-process dask client (threads share os.environ, so AVLIPS_ROOT reaches the work)."""
    from distributed import Client

    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
        yield client


def hog_track_boxes(video: Path) -> np.ndarray:
    """(T, 4) face boxes from dlib's HOG detector, loosened towards RetinaFace's convention (taller, higher)."""
    import dlib

    from preprocess.media import iter_frame_batches

    detector = dlib.get_frontal_face_detector()
    boxes = []
    for batch in iter_frame_batches(video, gray=True):
        for frame in batch:
            found = detector(frame, 0)
            if len(found) == 0:
                boxes.append([np.nan] * 4)
                continue
            r = max(found, key=lambda d: d.area())
            boxes.append([r.left(), r.top(), r.right(), r.bottom()])
    boxes = pd.DataFrame(boxes).interpolate(limit_direction="both").to_numpy(np.float64)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    cy = cy - 0.12 * h
    w, h = 1.2 * w, 1.3 * h
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)


def write_track_outputs(corpus: str, split_video: str | None = None) -> None:
    """Track stage outputs in its contract for every resampled video: boxes, tracks.parquet, status."""
    from pipeline import paths
    from pipeline.params import stable_hash
    from pipeline.status import OK, StatusRecord, read_record, write_record

    resample_dir = paths.stage_dir("resample", corpus)
    out = paths.stage_dir("track", corpus)
    (out / "boxes").mkdir(parents=True, exist_ok=True)
    manifest = pd.read_parquet(paths.source_manifest_path(corpus))
    tracks = []
    for video_id in sorted(manifest.video_id):
        source = read_record("resample", corpus, video_id)
        if source is None or source.status != OK:
            continue
        boxes = hog_track_boxes(resample_dir / "video" / f"{video_id}.mkv")
        n = len(boxes)
        cuts = [(0, n)] if video_id != split_video else [(0, 40), (40, n)]
        rows = []
        for seg, (s, e) in enumerate(cuts):
            rows.append(pd.DataFrame({
                "segment": np.full(e - s, seg, np.int32), "frame": np.arange(s, e, dtype=np.int32),
                **{k: boxes[s:e, i].astype(np.float32) for i, k in enumerate(["x1", "y1", "x2", "y2"])},
                "score": np.full(e - s, 0.99, np.float32), "detected": np.ones(e - s, bool)}))
            tracks.append({"corpus": corpus, "video_id": video_id, "segment": seg, "start_frame": s, "end_frame": e,
                           "n_faces": 1, "sync_method": "none", "sync_offset": None, "sync_confidence": 0.0,
                           "speaker_ambiguous": False, "audio_shift_frames": 0})
        pd.concat(rows).to_parquet(out / "boxes" / f"{video_id}.parquet", index=False)
        write_record(StatusRecord(corpus, video_id, "track", OK, "", stable_hash("test-track", source.fingerprint),
                                  0.0, {"n_segments": len(cuts)}))
    table = pd.DataFrame(tracks).astype({"segment": "int32", "start_frame": "int32", "end_frame": "int32",
                                         "sync_offset": "Int32", "audio_shift_frames": "int32"})
    table.to_parquet(out / "tracks.parquet", index=False)


def build(root: Path) -> Path:
    """resample + (test) track for the two test corpora under `root`."""
    from pipeline.manifest import scan_corpus, write_manifest
    from pipeline.params import get_corpus, load_params
    from pipeline.stages import resample

    (root / "raw" / "grid").mkdir(parents=True)
    (root / "raw" / "cremad").mkdir(parents=True)
    for clip in GRID:
        (root / "raw" / "grid" / clip.name).symlink_to(clip)
    (root / "raw" / "grid" / ODD_NAME).symlink_to(GRID[0])
    for clip in CREMAD:
        (root / "raw" / "cremad" / clip.name).symlink_to(clip)
    (root / "params.yaml").write_text(PARAMS)
    (root / "data_manifests").mkdir()
    with project_env(root), local_client() as client:
        params = load_params()
        for name in ("gridt", "cremadt"):
            corpus = get_corpus(name, params)
            write_manifest(scan_corpus(corpus), root / "data_manifests" / f"{name}.parquet")
            resample.run(name, client)
        manifest = pd.read_parquet(root / "data_manifests" / "gridt.parquet")
        split_video = manifest.sort_values("video_id").video_id.iloc[1]
        write_track_outputs("gridt", split_video=split_video)
        write_track_outputs("cremadt")
    return root


@functools.lru_cache(maxsize=None)
def base_project() -> Path:
    """Built once per test process (a temporary folder outside the repository)."""
    root = Path(tempfile.mkdtemp(prefix="avlips-align-test-")) / "project"
    root.mkdir()
    return build(root)


@functools.lru_cache(maxsize=None)
def aligned_project() -> Path:
    """base_project() plus the align stage (dlib) on both corpora; treat it as read-only."""
    from pipeline.stages import align

    root = base_project()
    with project_env(root), local_client() as client:
        for name in ("gridt", "cremadt"):
            align.run(name, client)
    return root


def copy_project(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst
