"""align@CORPUS: 68 landmarks on the tracked face, canonical alignment and the mouth-crop transforms, per video.

Reads the track stage's boxes (`data/track/<corpus>/boxes/<video_id>.parquet`, one row per frame of each
kept segment) and segments (`tracks.parquet`) and the resampled video, and writes one small
`data/align/<corpus>/aligned/<video_id>.npz` per video (landmarks and transforms, no pixels; see
preprocess/align/align_video.py) in one decode. The crop stage renders the mouths from them.
Only videos whose track record is ok go on; the others get a `skipped` row naming the track's reason.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from preprocess import paths
from preprocess.align.align_params import AlignParams
from preprocess.fileio import prune_outputs, read_parquet
from preprocess.records import OK, CorpusRef, StatusRecord, VideoTask
from preprocess.resample import stage as resample_stage
from preprocess.settings import json_hash, section
from preprocess.track import stage as track_stage
from preprocess.weights import weights_identity
from preprocess.worker_models import load_once

STAGE = "align"
UPSTREAM = track_stage.STAGE
VERSION = 2  # bump when the alignment itself changes, so finished videos are redone (2: no pixels kept)

def settings(params: dict, corpus: CorpusRef | None = None) -> AlignParams:
    return section(params, STAGE, AlignParams)


def output_path(corpus: str, video_id: str) -> Path:
    return paths.stage_dir(STAGE, corpus) / "aligned" / f"{video_id}.npz"


def resolve_weights(stage_params: AlignParams, params: dict) -> Path | None:
    if stage_params.backend != "fan":
        return None
    from preprocess.weights import FAN_FILE, FAN_URL, WeightsParams, resolve_weights

    return resolve_weights(section(params, "weights", WeightsParams).fan, FAN_FILE, FAN_URL, "FAN landmark weights",
                           "fan", hint="; or set align.backend: dlib, which works offline")


def landmarker_for(stage_params: AlignParams, weights: str | None):
    """The landmark model, loaded once per worker process."""
    from preprocess.align.align_video import make_landmarker

    key = (stage_params.backend, stage_params.dlib_refine, stage_params.fan_reference_scale,
           stage_params.batch_size, weights)
    return load_once(STAGE, key, lambda: make_landmarker(stage_params, Path(weights) if weights else None),
                     uses_torch=stage_params.backend == "fan")


def work(task: VideoTask) -> dict:
    from preprocess.align.align_video import align_video

    inp = task.inputs
    landmarker = landmarker_for(inp["params"], inp["weights"])
    table = read_parquet(inp["boxes"])
    boxes = {name: column.to_numpy() for name, column in zip(table.column_names, table.columns)}
    return align_video(Path(inp["video"]), boxes, inp["segments"], inp["params"], landmarker,
                       output_path(task.corpus, task.video_id))


def plan(corpus: CorpusRef, videos: list, stage_params: AlignParams, params: dict):
    weights = resolve_weights(stage_params, params)
    segments = _segments_by_video(track_stage.tracks_table_path(corpus.name))
    tasks = []
    for row, upstream in videos:
        video_id = row["video_id"]
        fingerprint = json_hash((VERSION, upstream.fingerprint, asdict(stage_params), weights_identity(weights)))
        video, _ = resample_stage.output_paths(corpus.name, video_id)
        tasks.append(VideoTask(STAGE, corpus.name, video_id, fingerprint, {
            "boxes": str(track_stage.output_paths(corpus.name, video_id)[0]),
            "segments": segments.get(video_id, []), "video": str(video),
            "params": stage_params, "weights": str(weights) if weights else None},
            [str(output_path(corpus.name, video_id))]))
    return tasks, []


def finish(corpus: CorpusRef, records: list[StatusRecord], stage_params: AlignParams) -> None:
    prune_outputs([paths.stage_dir(STAGE, corpus.name) / "aligned"], {r.video_id for r in records if r.status == OK})


def _segments_by_video(tracks_path: Path) -> dict[str, list[dict]]:
    """The track stage's per-segment rows (sync offset, audio shift ...), grouped by video, read once."""
    if not tracks_path.exists():
        return {}
    by_video: dict[str, list[dict]] = {}
    for row in read_parquet(tracks_path).to_pylist():
        by_video.setdefault(row.pop("video_id"), []).append(row)
    return by_video
