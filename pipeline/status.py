"""Status across corpora and stages: how many videos are ok, failed, skipped or still pending.

A stored record counts only while it is what the stage would make now: when its fingerprint differs from the
one the stage's own `plan` computes today (params, weights, the source or an upstream result changed), or it
is ok while the upstream stage would no longer pass the video on, the video is `pending` ("stale" in the
note), never ok (pipeline.stages.expected_fingerprints).
"""
from __future__ import annotations

import pandas as pd

from preprocess import paths
from pipeline.manifest import read_manifest
from pipeline.corpora import load_corpora, load_params
from pipeline.stages import PER_CORPUS_STAGES, expected_fingerprints, is_stale
from preprocess.records import read_record


def status_table() -> pd.DataFrame:
    params = load_params()
    rows = []
    for corpus in load_corpora(params).values():
        manifest_path = paths.source_manifest_path(corpus.name)
        if not manifest_path.exists():
            rows.append({"corpus": corpus.name, "stage": "-", "videos": 0, "ok": 0, "failed": 0, "skipped": 0,
                         "pending": 0, "note": "no source manifest: run `corpus add`"})
            continue
        video_ids = read_manifest(manifest_path).video_id.tolist()
        expected, errors = expected_fingerprints(corpus.name, params)
        for stage in PER_CORPUS_STAGES:
            rows.append(stage_counts(stage, corpus.name, video_ids, expected.get(stage), errors.get(stage)))
    return pd.DataFrame(rows)


def stage_counts(stage: str, corpus: str, video_ids: list[str], expected: dict | None, error: str | None) -> dict:
    counts = {"ok": 0, "failed": 0, "skipped": 0, "pending": 0}
    stale = 0
    for video_id in video_ids:
        record = read_record(stage, corpus, video_id)
        if record is not None and expected is not None and is_stale(record, expected.get(video_id)):
            stale += 1
            record = None
        counts[record.status if record else "pending"] += 1
    notes = [f"{stale} stale (params or inputs changed since they were done)"] if stale else []
    if error:  # the counts stand, unchecked
        notes.append(f"fingerprints not checked ({error})")
    return {"corpus": corpus, "stage": stage, "videos": len(video_ids), **counts, "note": "; ".join(notes)}
