"""crop@CORPUS: render every aligned video's mouths and pack the corpus's WebDataset shards, per split.

Per video, on the dask workers (`work`): one decode of the resampled video, the 96x96 mouths warped from the
full frames with the align stage's frame -> crop transforms (preprocess/crop/render.py), the audio cut from
the resampled wav with the piece's shift, and the video's samples written to a per-video tar in
`data/crop/<corpus>/rendered/`. Then, in one process (`finish`), every video's samples are packed into
`data/shards/<corpus>/`:
  <split>-%06d.tar   samples `<corpus>__<video_id>__<segment>` (see preprocess/crop/samples.py)
  manifest.parquet   one row per sample (key, shard, split, label, method, n_frames, QC fields)
  index.json         per shard: split, samples, bytes, sha256
with per-video status records in `data/crop/<corpus>/status/`, a copy of the index at
`data/crop/<corpus>/index.json` (the small file the collect stage depends on) and `packed.json` (the crop
fingerprint each video's samples in the shards were made with).

Incremental: a video whose fingerprint (its align record's, which chains the upstream stages' params and
the source's hash, plus this stage's params and the manifest fields in its json) is unchanged is not rendered
again; its samples are copied from the current shards. Samples are ordered by split, video id and segment,
so an incremental run, a resumed run and a fresh run give byte-identical shards (see preprocess/crop/pack.py
for how a kill at any moment is resumed).
"""
from __future__ import annotations

import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from preprocess.align import stage as align_stage
from preprocess.align.align_video import load_aligned
from preprocess.crop.pack import (commit, pack, read_packed, rendered_path,
                                  shard_dir)
from preprocess.crop.samples import open_audio, render_samples, write_video_tar
from preprocess.fileio import atomic_path, remove_leftover_tmp_files
from preprocess.records import FAILED, OK, CorpusRef, StageFailure, StatusRecord, VideoTask, plain, write_record, \
    write_status_table
from preprocess.resample import stage as resample_stage
from preprocess.settings import json_hash, section

STAGE = "crop"
UPSTREAM = align_stage.STAGE
VERSION = 2  # bump when the samples themselves change, so finished videos are redone (2: warped from the frames)
ROW_FIELDS = ("video_id", "split", "label", "method", "sha256")  # the manifest fields a sample's json holds
UPSTREAM_SECTIONS = ("resample", "track")  # hashed into every sample's params_hash with align's and crop's


@dataclass(frozen=True)
class CropParams:
    maxcount: int = 1000  # samples per shard at most
    maxsize: int = 1_000_000_000  # bytes per shard at most (a single bigger sample gets its own shard)


def settings(params: dict, corpus: CorpusRef | None = None) -> CropParams:
    return section(params, STAGE, CropParams)


def prepare(corpus: CorpusRef) -> None:
    """Before planning: finish (or drop) the packing a killed run left, so the shards are a whole set."""
    remove_leftover_tmp_files(shard_dir(corpus.name))
    commit(corpus.name)


def plan(corpus: CorpusRef, videos: list, stage_params: CropParams, params: dict):
    packed = read_packed(corpus.name)
    upstream_params = {name: params.get(name) for name in UPSTREAM_SECTIONS}
    tasks = []
    for row, upstream in videos:
        video_id = row["video_id"]
        fields = {k: plain(row.get(k)) for k in ROW_FIELDS}
        # crop's own params only pack (shard sizes): they change no sample, so they are not in the fingerprint
        fingerprint = json_hash((VERSION, upstream.fingerprint, corpus.name, fields, upstream_params))
        # An ok record is reused while its samples are somewhere: its per-video tar, or the current shards.
        rendered = rendered_path(corpus.name, video_id, fingerprint)
        held = packed.shard_paths(corpus.name, video_id, fingerprint)
        outputs = [str(rendered)] if rendered.exists() or held is None else [str(p) for p in held]
        video, audio = resample_stage.output_paths(corpus.name, video_id)
        tasks.append(VideoTask(STAGE, corpus.name, video_id, fingerprint, {
            "row": fields, "aligned": str(align_stage.output_path(corpus.name, video_id)), "video": str(video),
            "audio": str(audio), "upstream_params": upstream_params}, outputs))
    return tasks, []


def work(task: VideoTask) -> dict:
    inp = task.inputs

    def params_hash_of(align_params: dict) -> str:
        # every section that shaped the samples (fingerprints chain the same per video)
        return json_hash((align_stage.VERSION, VERSION, inp["upstream_params"], align_params))

    try:
        aligned = load_aligned(Path(inp["aligned"]), keys=("piece", "frame", "crop_transforms", "landmarks_crop"))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise StageFailure(f"align output unreadable: {exc}") from None
    try:
        audio = open_audio(Path(inp["audio"]))
    except ValueError as exc:
        raise StageFailure(str(exc)) from None
    samples = render_samples(task.corpus, inp["row"], aligned, Path(inp["video"]), audio, params_hash_of)
    try:
        with atomic_path(rendered_path(task.corpus, task.video_id, task.fingerprint)) as tmp:
            n_samples, n_frames = write_video_tar(tmp, samples)
    except ValueError as exc:  # the video is shorter than the align output says, or will not decode
        raise StageFailure(f"cannot render the mouths from {Path(inp['video']).name}: {exc}") from None
    details = {"split": inp["row"]["split"], "n_samples": n_samples, "n_frames": n_frames}
    if audio is None:
        details["note"] = "no audio: the samples carry silent (zero) audio"
    return details


def finish(corpus: CorpusRef, records: list[StatusRecord], stage_params: CropParams) -> list[StatusRecord]:
    """Pack every ok video's samples into the shards (see preprocess/crop/pack.py)."""
    ok = [r for r in records if r.status == OK]
    missing, n_samples, n_shards = pack(corpus.name, [(r.video_id, r.details["split"], r.fingerprint) for r in ok],
                                        stage_params.maxcount, stage_params.maxsize)
    if missing:  # samples deleted by hand during the run: redone next time
        lost = set(missing)
        records = [StatusRecord(r.corpus, r.video_id, STAGE, FAILED, "its rendered samples were gone when the "
                                "shards were packed (deleted during the run?): rerun the stage", r.fingerprint,
                                details={"retry": True}) if r.video_id in lost else r for r in records]
        for record in records:
            if record.video_id in lost:
                write_record(record)
        write_status_table(STAGE, corpus.name, records)
    print(f"crop@{corpus.name}: {n_samples} samples in {n_shards} shards", file=sys.stderr)
    return records
