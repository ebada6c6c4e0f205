"""Status across corpora and stages: how many videos are ok, failed, skipped or still pending.

A stored record counts only while it is what the stage would make now: when its fingerprint differs from the
one the stage's own `plan` computes today (params, weights or the source changed), or it is ok while the
upstream stage no longer passes the video on, the video is `pending` ("stale" in the note), never ok.
"""
from __future__ import annotations

import pandas as pd

from preprocess import paths
from pipeline.manifest import read_manifest
from pipeline.corpora import load_corpora, load_params
from pipeline.stages import PER_CORPUS_STAGES, expected_fingerprints
from preprocess.records import OK, read_record


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
        for stage in PER_CORPUS_STAGES:
            rows.append(stage_counts(stage, corpus.name, video_ids, params))
    return pd.DataFrame(rows)


def stage_counts(stage: str, corpus: str, video_ids: list[str], params: dict) -> dict:
    counts = {"ok": 0, "failed": 0, "skipped": 0, "pending": 0}
    notes, stale = [], 0
    try:
        expected = expected_fingerprints(stage, corpus, params)
    except Exception as exc:  # bad params, a missing model: the counts stand, unchecked, and say why
        expected = None
        notes.append(f"fingerprints not checked: {exc}")
    for video_id in video_ids:
        record = read_record(stage, corpus, video_id)
        if record is not None and expected is not None and is_stale(record, expected.get(video_id)):
            stale += 1
            record = None
        counts[record.status if record else "pending"] += 1
    if stale:
        notes.insert(0, f"{stale} stale (params or inputs changed since they were done)")
    return {"corpus": corpus, "stage": stage, "videos": len(video_ids), **counts, "note": "; ".join(notes)}


def is_stale(record, expected: str | None) -> bool:
    """A stored record the stage would not keep: another fingerprint than its task's now, or ok although the
    stage would now settle the video without work (its upstream stage no longer passes it on)."""
    if expected is None:
        return record.status == OK
    return record.fingerprint != expected
