"""Source manifests: one row per raw video of a corpus, with a stable id, hash, probe fields and split.

A rescan keeps the ids and splits of unchanged files, adds new ones, and marks changed and vanished ones.
pandas is imported where a table is built or read as a DataFrame, not at the top: the stage commands
(one per stage and corpus in `dvc repro`) read their manifest rows with pyarrow alone and skip its 0.25 s import.
"""
from __future__ import annotations

import hashlib
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.corpora import Corpus
from preprocess.fileio import read_parquet, sha256_file, write_parquet_atomic
from preprocess.paths import project_path
from pipeline.splits import group_of, read_split_file, split_of
from preprocess.probe import ProbeError, ProbeInfo, probe

if TYPE_CHECKING:
    import pandas as pd

PROBE_COLUMNS = list(ProbeInfo.__dataclass_fields__)
COLUMNS = ["video_id", "relpath", "bytes", "mtime_ns", "sha256", *PROBE_COLUMNS, "probe_error",
           "label", "method", "split", "group", "scan_state", "previous_sha256"]
# scan_state: new (first seen this scan), unchanged, changed (new sha256), missing (file vanished)
PRESENT_STATES = ("new", "unchanged", "changed")


def video_id_for(relpath: str) -> str:
    """Stable, dot-free, ASCII id: a readable slug of the path plus a short hash that keeps it unique."""
    stem = relpath.rsplit(".", 1)[0] if "." in Path(relpath).name else relpath
    slug = re.sub(r"[^A-Za-z0-9-]+", "_", stem).strip("_-")[:80] or "video"
    return f"{slug}-{hashlib.sha1(relpath.encode()).hexdigest()[:8]}"


def list_videos(raw_dir: Path, pattern: str) -> list[str]:
    return sorted(p.relative_to(raw_dir).as_posix() for p in raw_dir.glob(pattern) if p.is_file())


def _describe(path: Path) -> dict:
    try:
        row = probe(path).as_columns()
        row["probe_error"] = None
    except ProbeError as exc:
        row = {c: None for c in PROBE_COLUMNS} | {"probe_error": str(exc)}
    row["sha256"] = sha256_file(path)
    return row


def scan_corpus(corpus: Corpus, previous: pd.DataFrame | None = None, threads: int = 4) -> pd.DataFrame:
    """Build the manifest of `corpus`, reusing hashes and probes of files whose size and mtime are unchanged."""
    import pandas as pd

    raw_dir = corpus.raw_path()
    relpaths = list_videos(raw_dir, corpus.pattern)
    before = {} if previous is None else {r["relpath"]: r for r in previous.to_dict("records")}

    stats = {rel: (raw_dir / rel).stat() for rel in relpaths}
    to_describe = [rel for rel in relpaths
                   if rel not in before
                   or (before[rel]["bytes"], before[rel]["mtime_ns"]) != (stats[rel].st_size, stats[rel].st_mtime_ns)]
    with ThreadPoolExecutor(threads) as pool:  # hashing and probing are I/O bound
        described = dict(zip(to_describe, pool.map(lambda rel: _describe(raw_dir / rel), to_describe)))

    assigned = read_split_file(project_path(corpus.split.file)) if corpus.split.file else None
    known = set(relpaths) | set(before)  # a labelled file that vanished stays a `missing` row, not an error
    overrides = read_labels_file(project_path(corpus.labels), known) if corpus.labels else {}
    rows = []
    for rel in relpaths:
        old = before.get(rel)
        row = {c: old[c] for c in (*PROBE_COLUMNS, "probe_error", "sha256")} if old is not None else {}
        row.update(described.get(rel, {}))
        if old is None:
            state, previous_sha = "new", None
        elif row["sha256"] != old["sha256"]:
            state, previous_sha = "changed", old["sha256"]
        else:
            state, previous_sha = "unchanged", old.get("previous_sha256")
        group = group_of(rel, corpus.split.group_by)
        row.update(
            video_id=video_id_for(rel), relpath=rel, bytes=stats[rel].st_size, mtime_ns=stats[rel].st_mtime_ns,
            label=corpus.label, method=corpus.method, group=group,
            split=assigned_split(assigned, group, rel, corpus.split.file) if assigned is not None
            else split_of(group, corpus.split.val, corpus.split.test, corpus.split.seed),
            scan_state=state, previous_sha256=previous_sha,
        )
        row.update(overrides.get(rel, {}))
        rows.append(row)
    for rel, old in before.items():
        if rel not in stats:  # vanished: keep the row so the loss is visible, marked missing
            rows.append({**{c: old.get(c) for c in COLUMNS}, "scan_state": "missing"})
    table = pd.DataFrame(rows, columns=COLUMNS).sort_values("relpath", kind="stable").reset_index(drop=True)
    return table.astype({"bytes": "int64", "mtime_ns": "int64"})


def read_labels_file(path: Path, relpaths: set[str]) -> dict[str, dict]:
    """relpath -> {label, method} from a CSV with columns relpath,label[,method] (e.g. FakeAVCeleb, where real
    and fake videos share one tree)."""
    import pandas as pd

    from pipeline.corpora import LABELS

    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    if not {"relpath", "label"} <= set(table.columns):
        raise ValueError(f"labels file {path} needs the columns 'relpath' and 'label' (optional: 'method')")
    if "method" not in table.columns:
        table["method"] = ""
    bad = table[~table.label.isin(LABELS)]
    if len(bad):
        raise ValueError(f"labels file {path}: label {bad.label.iloc[0]!r} of {bad.relpath.iloc[0]!r} is not one of "
                         f"{', '.join(LABELS)}")
    unknown = sorted(set(table.relpath) - relpaths)
    if unknown:
        raise ValueError(f"labels file {path}: {len(unknown)} row(s) name files that are not in the corpus, "
                         f"e.g. {unknown[0]!r} (paths are relative to the corpus folder)")
    return {r.relpath: {"label": r.label, "method": r.method or None} for r in table.itertuples()}


def assigned_split(assigned: dict[str, str], group: str, relpath: str, split_file: str) -> str:
    if group not in assigned:
        raise ValueError(f"{relpath}: its group {group!r} is not in the split file {split_file} "
                         "(check --group-by, or add the group to the file)")
    return assigned[group]


def write_manifest(table: pd.DataFrame, path: Path) -> None:
    write_parquet_atomic(path, table)


def read_manifest(path: Path) -> pd.DataFrame:
    import pandas as pd

    _must_exist(path)
    return pd.read_parquet(path)


def read_manifest_rows(path: Path) -> list[dict]:
    """The manifest as one dict per video (a missing value is None), sorted by video id."""
    _must_exist(path)
    return sorted(read_parquet(path).to_pylist(), key=lambda row: row["video_id"])


def _must_exist(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(
            f"no source manifest at {path}: run `python -m pipeline corpus add` for this corpus first"
        )
