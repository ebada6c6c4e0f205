"""resample@CORPUS: every source video to 25 fps video (.mkv) and 16 kHz mono audio (.wav)."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from pipeline import paths
from pipeline.manifest import read_manifest
from pipeline.params import get_corpus, load_params, stable_hash, stage_section
from pipeline.runner import VideoTask, prune_outputs, run_stage
from pipeline.status import SKIPPED, StatusRecord
from preprocess.resample import ResampleParams, resample_video

STAGE = "resample"
VERSION = 1  # bump when the conversion itself changes, so finished videos are redone


def output_paths(corpus: str, video_id: str) -> tuple[Path, Path]:
    out = paths.stage_dir(STAGE, corpus)
    return out / "video" / f"{video_id}.mkv", out / "audio" / f"{video_id}.wav"


def resample_params(corpus_role: str, params: dict) -> ResampleParams:
    return stage_section(params, STAGE, ResampleParams, require_audio=corpus_role == "pretrain")


def work(task: VideoTask) -> dict:
    video_out, audio_out = output_paths(task.corpus, task.video_id)
    audio_out.unlink(missing_ok=True)  # a redo must not leave audio of an older version of the source
    return resample_video(Path(task.inputs["source"]), video_out, audio_out, task.inputs["params"])


def run(corpus_name: str, client) -> list[StatusRecord]:
    params = load_params()
    corpus = get_corpus(corpus_name, params)
    stage_params = resample_params(corpus.role, params)
    manifest = read_manifest(paths.source_manifest_path(corpus_name))
    tasks, settled = [], []
    for row in manifest.to_dict("records"):
        if row["scan_state"] == "missing":
            settled.append(StatusRecord(corpus_name, row["video_id"], STAGE, SKIPPED,
                                        f"source file {row['relpath']} was missing at the last scan"))
            continue
        fingerprint = stable_hash(VERSION, row["sha256"], asdict(stage_params))
        video_out, audio_out = output_paths(corpus_name, row["video_id"])
        outputs = [str(video_out)] + ([str(audio_out)] if row["has_audio"] else [])
        tasks.append(VideoTask(STAGE, corpus_name, row["video_id"], fingerprint,
                               {"source": str(corpus.raw_path() / row["relpath"]), "params": stage_params},
                               outputs))
    records = run_stage(STAGE, corpus_name, tasks, work, client, settled)
    out = paths.stage_dir(STAGE, corpus_name)
    prune_outputs([out / "video", out / "audio"], {r.video_id for r in records if r.status == "ok"})
    return records
