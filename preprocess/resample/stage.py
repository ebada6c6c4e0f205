"""resample@CORPUS: every source video to 25 fps video (.mkv) and 16 kHz mono audio (.wav)."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from preprocess import paths
from preprocess.fileio import prune_outputs
from preprocess.records import OK, SKIPPED, CorpusRef, StatusRecord, VideoTask
from preprocess.resample.convert import ResampleParams, resample_video
from preprocess.settings import json_hash, section

STAGE = "resample"
UPSTREAM = None  # reads the raw files of the source manifest
VERSION = 1  # bump when the conversion itself changes, so finished videos are redone


def output_paths(corpus: str, video_id: str) -> tuple[Path, Path]:
    out = paths.stage_dir(STAGE, corpus)
    return out / "video" / f"{video_id}.mkv", out / "audio" / f"{video_id}.wav"


def settings(params: dict, corpus: CorpusRef) -> ResampleParams:
    return section(params, STAGE, ResampleParams, require_audio=corpus.role == "pretrain")


def plan(corpus: CorpusRef, videos: list, stage_params: ResampleParams, params: dict):
    tasks, settled = [], []
    for row, _ in videos:
        if row["scan_state"] == "missing":
            settled.append(StatusRecord(corpus.name, row["video_id"], STAGE, SKIPPED,
                                        f"source file {row['relpath']} was missing at the last scan"))
            continue
        fingerprint = json_hash((VERSION, row["sha256"], asdict(stage_params)))
        video_out, audio_out = output_paths(corpus.name, row["video_id"])
        outputs = [str(video_out)] + ([str(audio_out)] if row["has_audio"] else [])
        tasks.append(VideoTask(STAGE, corpus.name, row["video_id"], fingerprint,
                               {"source": str(corpus.raw_dir / row["relpath"]), "params": stage_params}, outputs))
    return tasks, settled


def work(task: VideoTask) -> dict:
    video_out, audio_out = output_paths(task.corpus, task.video_id)
    audio_out.unlink(missing_ok=True)  # a redo must not leave audio of an older version of the source
    return resample_video(Path(task.inputs["source"]), video_out, audio_out, task.inputs["params"])


def finish(corpus: CorpusRef, records: list[StatusRecord], stage_params: ResampleParams) -> None:
    out = paths.stage_dir(STAGE, corpus.name)
    prune_outputs([out / "video", out / "audio"], {r.video_id for r in records if r.status == OK})
