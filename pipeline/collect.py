"""collect: which shards feed which training role, from the corpora params.yaml names.

    python -m pipeline collect            (dvc.yaml stage `collect`)

Writes, under `data/collect/`:
  <role>.json     for each role (pretrain, finetune, eval): {"train": [...], "val": [...], "test": [...]},
                  each entry {path, sha256, samples, bytes, corpus, label, method} for one shard, in corpus
                  then shard order. This is the index train/data.py's `read_index(path, split)` reads.
  summary.json    per role and corpus: label, method, dataset (the Table 3 column of an eval corpus), samples
                  per split; corpora not packed yet.
Built from each corpus's small `data/crop/<corpus>/index.json`, so training stages depend on these small
files (their hashes change whenever a shard does), never on the terabyte shard folders; a corpus removed
from params.yaml drops out of them, and so out of training.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from preprocess import paths
from preprocess.contract import SPLITS
from preprocess.fileio import write_bytes_atomic
from pipeline.corpora import ROLES, load_corpora



def output_dir() -> Path:
    return paths.project_root() / "data" / "collect"


def collect(corpora=None) -> tuple[dict, dict]:
    """(per-role shard lists by split, summary)."""
    corpora = load_corpora() if corpora is None else corpora
    roles = {role: {split: [] for split in SPLITS} for role in ROLES}
    summary = {"roles": {role: {} for role in ROLES}, "missing": []}
    for name in sorted(corpora):
        corpus = corpora[name]
        index_path = paths.stage_dir("crop", name) / "index.json"
        if not index_path.exists():
            summary["missing"].append(name)  # not packed yet: visible, not silently empty
            continue
        counts = {}
        for shard in json.loads(index_path.read_text())["shards"]:
            entry = {"path": f"data/shards/{name}/{shard['shard']}", "sha256": shard["sha256"],
                     "samples": shard["samples"], "bytes": shard["bytes"], "corpus": name,
                     "labels": shard["labels"], "methods": shard["methods"]}
            roles[corpus.role].setdefault(shard["split"], []).append(entry)
            counts[shard["split"]] = counts.get(shard["split"], 0) + shard["samples"]
        summary["roles"][corpus.role][name] = {"label": corpus.label, "method": corpus.method,
                                               "dataset": corpus.dataset, "samples": counts}
    return roles, summary


def main(argv=None) -> int:
    roles, summary = collect()
    out = output_dir()
    for role, splits in roles.items():
        write_bytes_atomic(out / f"{role}.json", json.dumps(splits, indent=1, sort_keys=True).encode())
        total = sum(e["samples"] for entries in splits.values() for e in entries)
        print(f"{role}: {len(summary['roles'][role])} corpora, {total} samples", file=sys.stderr)
    write_bytes_atomic(out / "summary.json", json.dumps(summary, indent=1, sort_keys=True).encode())
    if summary["missing"]:
        print(f"not packed yet (run crop first): {', '.join(summary['missing'])}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
