"""Status across corpora and stages: how many videos are ok, failed, skipped or still pending.

A stored record counts only while it is what the stage would make now: when its fingerprint differs from the
one the stage's own `plan` computes today (params, weights, the source or an upstream result changed), or it
is ok while the upstream stage would no longer pass the video on, the video is `pending` ("stale" in the
note), never ok (pipeline.stages.expected_fingerprints).
"""
from __future__ import annotations

import pandas as pd

from preprocess import paths
from pipeline.corpora import load_corpora, load_params
from pipeline.stages import PER_CORPUS_STAGES, expected_fingerprints, is_stale, manifest_rows
from preprocess.records import StatusRecord, read_record


def status_table() -> pd.DataFrame:
    params = load_params()
    rows = []
    for corpus in load_corpora(params).values():
        manifest_path = paths.source_manifest_path(corpus.name)
        if not manifest_path.exists():
            rows.append({"corpus": corpus.name, "stage": "-", "videos": 0, "ok": 0, "failed": 0, "skipped": 0,
                         "pending": 0, "note": "no source manifest: run `corpus add`"})
            continue
        videos = manifest_rows(corpus.name)
        video_ids = [row["video_id"] for row in videos]
        expected, stored, errors = expected_fingerprints(corpus.name, params, videos)
        for stage in PER_CORPUS_STAGES:
            records = stored.get(stage) or {vid: read_record(stage, corpus.name, vid) for vid in video_ids}
            rows.append(stage_counts(stage, corpus.name, records, expected.get(stage), errors.get(stage)))
    return pd.DataFrame(rows)


def stage_counts(stage: str, corpus: str, records: dict[str, StatusRecord | None], expected: dict | None,
                 error: str | None) -> dict:
    """Counts of one stage from its stored records ({video_id: record or None})."""
    counts = {"ok": 0, "failed": 0, "skipped": 0, "pending": 0}
    stale = 0
    for video_id, record in records.items():
        if record is not None and expected is not None and is_stale(record, expected.get(video_id)):
            stale += 1
            record = None
        counts[record.status if record else "pending"] += 1
    notes = [f"{stale} stale (params or inputs changed since they were done)"] if stale else []
    if error:  # the counts stand, unchecked
        notes.append(f"fingerprints not checked ({error})")
    return {"corpus": corpus, "stage": stage, "videos": len(records), **counts, "note": "; ".join(notes)}
