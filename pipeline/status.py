"""Status across corpora and stages: how many videos are ok, failed, skipped or still pending."""
from __future__ import annotations

import pandas as pd

from preprocess import paths
from pipeline.manifest import read_manifest
from pipeline.corpora import load_corpora
from pipeline.stages import PER_CORPUS_STAGES
from preprocess.records import read_record


def status_table() -> pd.DataFrame:
    rows = []
    for corpus in load_corpora().values():
        manifest_path = paths.source_manifest_path(corpus.name)
        if not manifest_path.exists():
            rows.append({"corpus": corpus.name, "stage": "-", "videos": 0, "ok": 0, "failed": 0, "skipped": 0,
                         "pending": 0, "note": "no source manifest: run `corpus add`"})
            continue
        video_ids = read_manifest(manifest_path).video_id.tolist()
        for stage in PER_CORPUS_STAGES:
            counts = {"ok": 0, "failed": 0, "skipped": 0, "pending": 0}
            for video_id in video_ids:
                record = read_record(stage, corpus.name, video_id)
                counts[record.status if record else "pending"] += 1
            rows.append({"corpus": corpus.name, "stage": stage, "videos": len(video_ids), **counts, "note": ""})
    return pd.DataFrame(rows)
