"""track@CORPUS: per resampled video, the face track of the speaking person with its audio-visual offset.

Outputs under data/track/CORPUS: boxes/<video_id>.parquet (one row per frame of each kept segment),
segments/<video_id>.parquet (one row per kept segment), and at the end tracks.parquet, all segments of the
corpus sorted by video and segment.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pyarrow as pa

from preprocess import paths
from preprocess.fileio import prune_outputs, read_parquet, rows_to_table, write_parquet_atomic
from preprocess.records import OK, CorpusRef, StatusRecord, VideoTask
from preprocess.resample import stage as resample_stage
from preprocess.settings import json_hash, section
from preprocess.track.track_params import TrackParams
from preprocess.worker_models import load_once
from preprocess.weights import RETINAFACE_FILE, RETINAFACE_URL, WeightsParams, resolve_weights, weights_identity

STAGE = "track"
UPSTREAM = resample_stage.STAGE
VERSION = 2  # bump when the tracking itself changes, so finished videos are redone (2: small YUV decode, gray HOG)
SYNCNET_FILE = "syncnet_v2.model"
TRACK_SCHEMA = pa.schema([("corpus", pa.string()), ("video_id", pa.string()), ("segment", pa.int32()),
                          ("start_frame", pa.int32()), ("end_frame", pa.int32()), ("n_faces", pa.int32()),
                          ("sync_method", pa.string()), ("sync_offset", pa.int32()),  # null: no offset measured
                          ("sync_confidence", pa.float64()), ("speaker_ambiguous", pa.bool_()),
                          ("audio_shift_frames", pa.int32())])

def output_paths(corpus: str, video_id: str) -> tuple[Path, Path]:
    out = paths.stage_dir(STAGE, corpus)
    return out / "boxes" / f"{video_id}.parquet", out / "segments" / f"{video_id}.parquet"


def tracks_table_path(corpus: str) -> Path:
    return paths.stage_dir(STAGE, corpus) / "tracks.parquet"


def settings(params: dict, corpus: CorpusRef | None = None) -> TrackParams:
    return section(params, STAGE, TrackParams)


def weight_files(params: dict, detector: str = "retinaface") -> dict:
    """Local weight files from the `weights` section; fails early, in plain words, when one is missing.
    dlib's detector needs none (its model is inside the dlib wheel)."""
    configured = section(params, "weights", WeightsParams)
    files = {"retinaface": str(resolve_weights(configured.retinaface, RETINAFACE_FILE, RETINAFACE_URL,
                                               "RetinaFace weights", "retinaface",
                                               " (or set track.detector: dlib, which needs no download)"))
             if detector == "retinaface" else None}
    # SyncNet is optional: without it the weights-free audio-visual score decides.
    syncnet = configured.syncnet
    files["syncnet"] = str(resolve_weights(syncnet, SYNCNET_FILE, None, "SyncNet weights", "syncnet")) \
        if syncnet else None
    return files


def _load_models(weights: dict, stage_params: TrackParams):
    """(face detector, SyncNet scorer or None), loaded once per worker process."""
    def build():
        from preprocess.track.detect import make_detector

        syncnet = None
        if weights["syncnet"]:
            from preprocess.track.syncnet import SyncNetScorer

            syncnet = SyncNetScorer(Path(weights["syncnet"]), vshift=stage_params.sync.syncnet_vshift)
        return make_detector(stage_params.detector, stage_params.detect, weights["retinaface"]), syncnet

    key = (stage_params.detector, weights["retinaface"], weights["syncnet"], stage_params.detect,
           stage_params.sync.syncnet_vshift)
    return load_once(STAGE, key, build, uses_torch=stage_params.detector == "retinaface" or bool(weights["syncnet"]))


def work(task: VideoTask) -> dict:
    from preprocess.track.track_video import track_video

    boxes_out, segments_out = output_paths(task.corpus, task.video_id)
    for stale in (boxes_out, segments_out):  # a redo that fails must not leave an older result behind
        stale.unlink(missing_ok=True)
    inputs = task.inputs
    detector, syncnet = _load_models(inputs["weights"], inputs["params"])
    audio = Path(inputs["audio"])
    result = track_video(Path(inputs["video"]), audio if audio.exists() else None, inputs["params"], detector,
                         syncnet, pretrain_real=inputs["pretrain_real"], scratch=boxes_out)
    write_parquet_atomic(segments_out, pa.Table.from_pylist(result.segments))
    write_parquet_atomic(boxes_out, pa.table(result.boxes))
    return result.details


def plan(corpus: CorpusRef, videos: list, stage_params: TrackParams, params: dict):
    weights = weight_files(params, stage_params.detector)
    tasks = []
    for row, upstream in videos:
        video_id = row["video_id"]
        label = row.get("label") or corpus.label
        pretrain_real = corpus.role == "pretrain" and label == "real"  # the sync threshold applies to these
        fingerprint = json_hash((VERSION, upstream.fingerprint, asdict(stage_params), pretrain_real,
                                weights_identity(weights["retinaface"]), weights_identity(weights["syncnet"])))
        video, audio = resample_stage.output_paths(corpus.name, video_id)
        tasks.append(VideoTask(STAGE, corpus.name, video_id, fingerprint, {
            "video": str(video), "audio": str(audio), "params": stage_params, "weights": weights,
            "pretrain_real": pretrain_real}, [str(p) for p in output_paths(corpus.name, video_id)]))
    return tasks, []


def finish(corpus: CorpusRef, records: list[StatusRecord], stage_params: TrackParams) -> None:
    keep = {r.video_id for r in records if r.status == OK}
    out = paths.stage_dir(STAGE, corpus.name)
    prune_outputs([out / "boxes", out / "segments"], keep)
    write_tracks_table(corpus.name, keep)


def write_tracks_table(corpus: str, video_ids: set[str]) -> pa.Table:
    """tracks.parquet from the per-video segment files: sorted by video and segment, typed (TRACK_SCHEMA;
    a NaN confidence is stored as null), the same bytes for the same results."""
    rows = []
    for video_id in sorted(video_ids):
        segments = read_parquet(output_paths(corpus, video_id)[1]).to_pylist()
        segments.sort(key=lambda seg: seg["segment"])
        rows += [{"corpus": corpus, "video_id": video_id, **seg} for seg in segments]
    table = rows_to_table(rows, TRACK_SCHEMA)
    write_parquet_atomic(tracks_table_path(corpus), table)
    return table
