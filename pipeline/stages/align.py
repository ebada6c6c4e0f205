"""align@CORPUS: 68 landmarks on the tracked face, canonical alignment and 96x96 mouth crops, per video.

Reads the track stage's boxes (`data/track/<corpus>/boxes/<video_id>.parquet`, one row per frame of each
kept segment) and segments (`tracks.parquet`), the resampled video and audio, and writes one
`data/align/<corpus>/aligned/<video_id>.npz` per video (see preprocess/align/video.py) in one decode.
Only videos whose track record is ok go on; the others get a `skipped` row naming the track's reason.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pandas as pd

from pipeline import paths
from pipeline.manifest import read_manifest
from pipeline.params import get_corpus, load_params, stable_hash, stage_section
from pipeline.runner import VideoTask, prune_outputs, run_stage
from pipeline.stages import resample as resample_stage
from pipeline.stages import track as track_stage
from pipeline.status import OK, SKIPPED, StatusRecord, read_record
from preprocess.align.config import AlignParams
from preprocess.weights import weights_identity

STAGE = "align"
VERSION = 1  # bump when the alignment itself changes, so finished videos are redone

_LANDMARKERS: dict = {}  # per worker process: the model is loaded once, not once per video


def align_params(params: dict) -> AlignParams:
    return stage_section(params, STAGE, AlignParams)


def output_path(corpus: str, video_id: str) -> Path:
    return paths.stage_dir(STAGE, corpus) / "aligned" / f"{video_id}.npz"


def resolve_weights(stage_params: AlignParams, params: dict) -> Path | None:
    if stage_params.backend != "fan":
        return None
    from preprocess.weights import FAN_FILE, FAN_URL, resolve_weights

    return resolve_weights((params.get("weights") or {}).get("fan"), FAN_FILE, FAN_URL, "FAN landmark weights",
                           "fan", hint="; or set align.backend: dlib, which works offline")


def landmarker_for(stage_params: AlignParams, weights: str | None):
    key = (stage_params.backend, stage_params.dlib_refine, stage_params.fan_reference_scale,
           stage_params.batch_size, weights)
    if key not in _LANDMARKERS:
        from preprocess.align.video import make_landmarker

        if stage_params.backend == "fan":
            import torch

            torch.set_num_threads(1)  # one task per worker process: processes, not threads, give parallelism
        _LANDMARKERS.clear()
        _LANDMARKERS[key] = make_landmarker(stage_params, Path(weights) if weights else None)
    return _LANDMARKERS[key]


def work(task: VideoTask) -> dict:
    from preprocess.align.video import align_video

    inp = task.inputs
    landmarker = landmarker_for(inp["params"], inp["weights"])
    boxes = pd.read_parquet(inp["boxes"])
    tracks = pd.DataFrame(inp["segments"])
    audio = Path(inp["audio"])
    return align_video(Path(inp["video"]), audio if audio.exists() else None, boxes, tracks, inp["params"],
                       landmarker, output_path(task.corpus, task.video_id))


def run(corpus_name: str, client) -> list[StatusRecord]:
    params = load_params()
    get_corpus(corpus_name, params)
    stage_params = align_params(params)
    weights = resolve_weights(stage_params, params)  # a missing model stops here, before any video
    manifest = read_manifest(paths.source_manifest_path(corpus_name))
    segments = _segments_by_video(track_stage.tracks_table_path(corpus_name))
    tasks, settled = [], []
    for video_id in manifest.video_id:
        record = read_record(track_stage.STAGE, corpus_name, video_id)
        if record is None or record.status != OK:
            why = "not tracked yet (run the track stage)" if record is None else \
                f"track stage {record.status}: {record.reason}"
            settled.append(StatusRecord(corpus_name, video_id, STAGE, SKIPPED, why, details={"upstream": track_stage.STAGE}))
            continue
        fingerprint = stable_hash(VERSION, record.fingerprint, asdict(stage_params), weights_identity(weights))
        tasks.append(VideoTask(STAGE, corpus_name, video_id, fingerprint, {
            "boxes": str(track_stage.output_paths(corpus_name, video_id)[0]),
            "segments": segments.get(video_id, []),
            "video": str(resample_stage.output_paths(corpus_name, video_id)[0]),
            "audio": str(resample_stage.output_paths(corpus_name, video_id)[1]),
            "params": stage_params, "weights": str(weights) if weights else None},
            [str(output_path(corpus_name, video_id))]))
    records = run_stage(STAGE, corpus_name, tasks, work, client, settled)
    prune_outputs([paths.stage_dir(STAGE, corpus_name) / "aligned"], {r.video_id for r in records if r.status == OK})
    return records


def _segments_by_video(tracks_path: Path) -> dict[str, list[dict]]:
    """The track stage's per-segment rows (sync offset, audio shift ...), grouped by video, read once."""
    if not tracks_path.exists():
        return {}
    table = pd.read_parquet(tracks_path)
    table = table.astype(object).where(table.notna(), None)
    return {vid: rows.drop(columns=["video_id"]).to_dict("records") for vid, rows in table.groupby("video_id")}
