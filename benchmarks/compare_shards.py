"""Compare two sets of shards of the same corpora member by member: which bytes differ, and by how much the
mouth crops do (mean / max absolute pixel difference).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/compare_shards.py OLD_SHARDS NEW_SHARDS [CORPUS ...]

OLD_SHARDS and NEW_SHARDS are `data/shards`-like folders (one sub-folder per corpus). Samples are matched by
key; json fields and manifest columns that differ are named.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from preprocess.shardformat import iter_samples, load_npy


def samples(folder: Path) -> dict:
    return {s["__key__"]: s for s in iter_samples([str(p) for p in sorted(folder.glob("*.tar"))])}


def compare(old: Path, new: Path) -> None:
    a, b = samples(old), samples(new)
    common = sorted(set(a) & set(b))
    print(f"{new.name}: {len(common)} samples in both, {len(set(a) - set(b))} only old, {len(set(b) - set(a))} only new")
    diffs, same, json_fields = [], {"audio.npy": 0, "landmarks.npy": 0, "json": 0}, set()
    for key in common:
        va, vb = load_npy(a[key]["video.npy"]).astype(np.int16), load_npy(b[key]["video.npy"]).astype(np.int16)
        if va.shape != vb.shape:
            print(f"  {key}: video shapes differ {va.shape} {vb.shape}")
            continue
        diffs.append(np.abs(va - vb).reshape(-1))
        for field in same:
            same[field] += bytes(a[key][field]) == bytes(b[key][field])
        ja, jb = json.loads(a[key]["json"]), json.loads(b[key]["json"])
        json_fields |= {k for k in set(ja) | set(jb) if ja.get(k) != jb.get(k)}
    if diffs:
        d = np.concatenate(diffs)
        print(f"  video.npy: mean abs difference {d.mean():.3f}, max {int(d.max())}, "
              f"pixels differing by more than 8: {100 * (d > 8).mean():.3f}%")
    print("  identical bytes: " + ", ".join(f"{k} {n}/{len(common)}" for k, n in same.items()))
    print(f"  json fields that differ: {sorted(json_fields) or 'none'}")
    ma, mb = pd.read_parquet(old / "manifest.parquet"), pd.read_parquet(new / "manifest.parquet")
    if list(ma.columns) != list(mb.columns):
        print(f"  manifest columns differ: {list(ma.columns)} vs {list(mb.columns)}")
    elif len(ma) == len(mb):
        # values, not dtypes: tables written by pandas and by pyarrow read back with other dtypes (Float64, float64)
        differ = [c for c in ma.columns if not ma[c].astype(object).where(ma[c].notna(), None).tolist()
                  == mb[c].astype(object).where(mb[c].notna(), None).tolist()]
        print(f"  manifest columns that differ: {differ or 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("corpora", nargs="*")
    args = parser.parse_args()
    for corpus in args.corpora or sorted(p.name for p in args.old.iterdir() if p.is_dir()):
        compare(args.old / corpus, args.new / corpus)


if __name__ == "__main__":
    main()
