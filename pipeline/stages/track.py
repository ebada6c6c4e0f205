"""track@CORPUS: per resampled video, the face track of the speaking person with its audio-visual offset.

Outputs under data/track/CORPUS: boxes/<video_id>.parquet (one row per frame of each kept segment),
segments/<video_id>.parquet (one row per kept segment), and at the end tracks.parquet, all segments of the
corpus sorted by video and segment. Videos the resample stage did not pass on get a `skipped` row.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pandas as pd

from pipeline import paths
from pipeline.atomic import write_parquet_atomic
from pipeline.manifest import read_manifest
from pipeline.params import get_corpus, load_params, stable_hash, stage_section
from pipeline.runner import VideoTask, prune_outputs, run_stage
from pipeline.stages import resample as resample_stage
from pipeline.status import OK, SKIPPED, StatusRecord, read_record
from preprocess.track.params import TrackParams
from preprocess.weights import RETINAFACE_FILE, RETINAFACE_URL, resolve_weights, weights_identity

STAGE = "track"
UPSTREAM = resample_stage.STAGE
VERSION = 1  # bump when the tracking itself changes, so finished videos are redone
SYNCNET_FILE = "syncnet_v2.model"
TRACK_COLUMNS = {"corpus": "string", "video_id": "string", "segment": "int32", "start_frame": "int32",
                 "end_frame": "int32", "n_faces": "int32", "sync_method": "string", "sync_offset": "Int32",
                 "sync_confidence": "float64", "speaker_ambiguous": "bool", "audio_shift_frames": "int32"}

_models: dict = {}  # per worker process: loaded once, reused for every video


def output_paths(corpus: str, video_id: str) -> tuple[Path, Path]:
    out = paths.stage_dir(STAGE, corpus)
    return out / "boxes" / f"{video_id}.parquet", out / "segments" / f"{video_id}.parquet"


def tracks_table_path(corpus: str) -> Path:
    return paths.stage_dir(STAGE, corpus) / "tracks.parquet"


def track_params(params: dict) -> TrackParams:
    return stage_section(params, STAGE, TrackParams)


def weight_files(params: dict, detector: str = "retinaface") -> dict:
    """Local weight files from the `weights` section; fails early, in plain words, when one is missing.
    dlib's detector needs none (its model is inside the dlib wheel)."""
    section = params.get("weights") or {}
    files = {"retinaface": str(resolve_weights(section.get("retinaface"), RETINAFACE_FILE, RETINAFACE_URL,
                                               "RetinaFace weights", "retinaface",
                                               " (or set track.detector: dlib, which needs no download)"))
             if detector == "retinaface" else None}
    # SyncNet is optional: without it the weights-free audio-visual score decides.
    syncnet = section.get("syncnet")
    files["syncnet"] = str(resolve_weights(syncnet, SYNCNET_FILE, None, "SyncNet weights", "syncnet")) \
        if syncnet else None
    return files


def _load_models(weights: dict, stage_params: TrackParams):
    key = (stage_params.detector, weights["retinaface"], weights["syncnet"], stage_params.detector_params())
    if key not in _models:
        if stage_params.detector == "retinaface" or weights["syncnet"]:  # dlib alone needs no torch (3 s import)
            import torch

            torch.set_num_threads(1)  # one task per worker process; processes, not threads, give parallelism
        from preprocess.track.detect import make_detector

        syncnet = None
        if weights["syncnet"]:
            from preprocess.track.syncnet import SyncNetScorer

            syncnet = SyncNetScorer(Path(weights["syncnet"]), vshift=stage_params.syncnet_vshift)
        _models.clear()
        detector = make_detector(stage_params.detector, stage_params.detector_params(), weights["retinaface"])
        _models[key] = (detector, syncnet)
    return _models[key]


def work(task: VideoTask) -> dict:
    from preprocess.track.video import track_video

    boxes_out, segments_out = output_paths(task.corpus, task.video_id)
    for stale in (boxes_out, segments_out):  # a redo that fails must not leave an older result behind
        stale.unlink(missing_ok=True)
    inputs = task.inputs
    detector, syncnet = _load_models(inputs["weights"], inputs["params"])
    audio = Path(inputs["audio"])
    result = track_video(Path(inputs["video"]), audio if audio.exists() else None, inputs["params"], detector,
                         syncnet, pretrain_real=inputs["pretrain_real"], scratch=boxes_out)
    write_parquet_atomic(segments_out, pd.DataFrame(result.segments))
    write_parquet_atomic(boxes_out, result.boxes)
    return result.details


def run(corpus_name: str, client) -> list[StatusRecord]:
    params = load_params()
    corpus = get_corpus(corpus_name, params)
    stage_params = track_params(params)
    weights = weight_files(params, stage_params.detector)
    manifest = read_manifest(paths.source_manifest_path(corpus_name))
    tasks, settled = [], []
    for row in manifest.to_dict("records"):
        video_id = row["video_id"]
        upstream = read_record(UPSTREAM, corpus_name, video_id)
        if upstream is None or upstream.status != OK:
            why = "not resampled yet" if upstream is None else f"resample {upstream.status}: {upstream.reason}"
            settled.append(StatusRecord(corpus_name, video_id, STAGE, SKIPPED, why, details={"upstream": UPSTREAM}))
            continue
        label = row.get("label") or corpus.label
        pretrain_real = corpus.role == "pretrain" and label == "real"  # the sync threshold applies to these
        fingerprint = stable_hash(VERSION, upstream.fingerprint, asdict(stage_params), pretrain_real,
                                  weights_identity(weights["retinaface"]), weights_identity(weights["syncnet"]))
        tasks.append(VideoTask(STAGE, corpus_name, video_id, fingerprint, {
            "video": str(resample_stage.output_paths(corpus_name, video_id)[0]),
            "audio": str(resample_stage.output_paths(corpus_name, video_id)[1]),
            "params": stage_params, "weights": weights,
            "pretrain_real": pretrain_real},
            [str(p) for p in output_paths(corpus_name, video_id)]))
    records = run_stage(STAGE, corpus_name, tasks, work, client, settled)
    keep = {r.video_id for r in records if r.status == OK}
    out = paths.stage_dir(STAGE, corpus_name)
    prune_outputs([out / "boxes", out / "segments"], keep)
    write_tracks_table(corpus_name, keep)
    return records


def write_tracks_table(corpus: str, video_ids: set[str]) -> pd.DataFrame:
    """tracks.parquet from the per-video segment files: sorted, typed, the same bytes for the same results."""
    frames = []
    for video_id in sorted(video_ids):
        seg = pd.read_parquet(output_paths(corpus, video_id)[1])
        seg.insert(0, "video_id", video_id)
        seg.insert(0, "corpus", corpus)
        frames.append(seg)
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(TRACK_COLUMNS))
    table = table[list(TRACK_COLUMNS)].astype(TRACK_COLUMNS).sort_values(["video_id", "segment"])
    write_parquet_atomic(tracks_table_path(corpus), table.reset_index(drop=True))
    return table
