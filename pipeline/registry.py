"""The corpus registry: add, rescan, list and remove corpora in params.yaml (comments and order kept)."""
from __future__ import annotations

import io
import re
from dataclasses import asdict
from pathlib import Path

import pandas as pd
from ruamel.yaml.comments import CommentedMap

from preprocess import paths
from preprocess.fileio import write_bytes_atomic
from pipeline.manifest import list_videos, read_manifest, scan_corpus, write_manifest
from pipeline.corpora import (
    CORPUS_NAME,
    DATASET_NAME,
    DEFAULT_SPLITS,
    LABELS,
    ROLES,
    Corpus,
    corpus_from_dict,
    yaml_roundtrip,
)
from preprocess.paths import project_path


class RegistryError(ValueError):
    """A user error in a registry command; the message says what is wrong and how to fix it."""


def validate(name: str, raw_dir: Path, pattern: str, role: str, label: str, method: str | None,
             group_by: str | None, dataset: str | None = None) -> list[str]:
    """Check every argument; return the matching relative paths."""
    if not CORPUS_NAME.match(name):
        raise RegistryError(
            f"invalid corpus name {name!r}: use lower-case letters, digits, '_' and '-', starting with a letter "
            "or digit (no dots: DVC reads a dot as a nested parameter; no '__': it separates sample key parts)"
        )
    if role not in ROLES:
        raise RegistryError(f"invalid role {role!r}: choose one of {', '.join(ROLES)}")
    if label not in LABELS:
        raise RegistryError(f"invalid label {label!r}: choose one of {', '.join(LABELS)}")
    if method and label != "fake":
        raise RegistryError("--method names a manipulation method, so it only goes with --label fake")
    if dataset is not None:
        if role != "eval":
            raise RegistryError("--dataset groups eval corpora into one Table 3 column, so it only goes with "
                                "--role eval")
        if not DATASET_NAME.match(dataset):
            raise RegistryError(f"invalid dataset name {dataset!r}: use letters, digits, spaces and '._+-', "
                                "starting with a letter or digit (it names a metrics entry and a plot file)")
    if not raw_dir.exists():
        raise RegistryError(f"raw video folder {raw_dir} does not exist")
    if not raw_dir.is_dir():
        raise RegistryError(f"{raw_dir} is not a folder")
    if not pattern or Path(pattern).is_absolute() or ".." in Path(pattern).parts:
        raise RegistryError(f"invalid pattern {pattern!r}: give a glob relative to the folder, e.g. '**/*.mp4'")
    relpaths = list_videos(raw_dir, pattern)
    if not relpaths:
        raise RegistryError(f"pattern {pattern!r} matches no files in {raw_dir}")
    if group_by:
        try:
            regex = re.compile(group_by)
        except re.error as exc:
            raise RegistryError(f"--group-by {group_by!r} is not a valid regular expression: {exc}") from None
        unmatched = [rel for rel in relpaths if not regex.search(rel)]
        if unmatched:
            raise RegistryError(
                f"--group-by {group_by!r} matches no group in {len(unmatched)} file(s), e.g. {unmatched[0]!r}"
            )
    return relpaths


def _load_params_doc() -> CommentedMap:
    path = paths.params_path()
    doc = yaml_roundtrip().load(path.read_text()) if path.exists() else None
    return doc if doc is not None else CommentedMap()


def _save_params_doc(doc: CommentedMap) -> None:
    buffer = io.StringIO()
    yaml_roundtrip().dump(doc, buffer)
    write_bytes_atomic(paths.params_path(), buffer.getvalue().encode())


def add_corpus(name: str, raw_dir: str, pattern: str | None = None, role: str | None = None,
               label: str | None = None, method: str | None = None,
               group_by: str | None = None, split_file: str | None = None,
               labels: str | None = None, dataset: str | None = None) -> tuple[Corpus, pd.DataFrame]:
    """Register a corpus, or rescan a registered one, and write its source manifest.

    Options left as None keep the registered value on a rescan (or take the default for a new corpus).
    `dataset`: the Table 3 column of an eval corpus (eval corpora with the same one form one column).
    """
    doc = _load_params_doc()
    corpora = doc.setdefault("corpora", CommentedMap())
    entry = corpora.get(name)
    if entry is None:
        entry = CommentedMap()
        corpora[name] = entry
    role = role or entry.get("role", "pretrain")
    if role not in ROLES:
        raise RegistryError(f"invalid role {role!r}: choose one of {', '.join(ROLES)}")
    entry.update(raw_dir=raw_dir, pattern=pattern or entry.get("pattern", "**/*.mp4"), role=role,
                 label=label or entry.get("label", "real"), method=method or entry.get("method"),
                 labels=labels or entry.get("labels"))
    if dataset or entry.get("dataset") is not None:  # a corpus registered without one gets no `dataset:` key
        entry["dataset"] = dataset or entry.get("dataset")
    split = entry.get("split") or CommentedMap()
    for key, value in {**DEFAULT_SPLITS[role], "seed": 0}.items():
        split.setdefault(key, value)
    split["group_by"] = group_by or split.get("group_by")
    split["file"] = split_file or split.get("file")
    entry["split"] = split
    corpus = corpus_from_dict(name, entry)
    validate(name, corpus.raw_path(), corpus.pattern, corpus.role, corpus.label, corpus.method, corpus.split.group_by,
             corpus.dataset)
    for what, path in (("split file", corpus.split.file), ("labels file", corpus.labels)):
        if path and not project_path(path).is_file():
            raise RegistryError(f"{what} {path} does not exist")
    manifest_path = paths.source_manifest_path(name)
    previous = read_manifest(manifest_path) if manifest_path.exists() else None
    manifest = scan_corpus(corpus, previous)
    write_manifest(manifest, manifest_path)
    _save_params_doc(doc)  # only after the scan succeeded, so a failed add leaves params.yaml as it was
    return corpus, manifest


def remove_corpus(name: str) -> list[Path]:
    """Drop the corpus from params.yaml and delete its source manifest. Returns generated folders left to the user."""
    doc = _load_params_doc()
    corpora = doc.get("corpora") or {}
    if name not in corpora:
        raise RegistryError(f"corpus {name!r} is not registered (registered: {', '.join(corpora) or 'none'})")
    del corpora[name]
    _save_params_doc(doc)
    paths.source_manifest_path(name).unlink(missing_ok=True)
    data = paths.project_root() / "data"
    return sorted(p for p in data.glob(f"*/{name}") if p.is_dir())


def list_corpora() -> pd.DataFrame:
    """One row per registered corpus with its manifest's counts."""
    from pipeline.corpora import load_corpora

    rows = []
    for corpus in load_corpora().values():
        row = {k: v for k, v in asdict(corpus).items() if k != "split"}
        manifest_path = paths.source_manifest_path(corpus.name)
        if manifest_path.exists():
            manifest = read_manifest(manifest_path)
            present = manifest[manifest.scan_state != "missing"]
            row.update(videos=len(present), hours=round(float(present.duration.fillna(0).sum()) / 3600, 3),
                       missing=int((manifest.scan_state == "missing").sum()),
                       unreadable=int(present.probe_error.notna().sum()))
        else:
            row.update(videos=None, hours=None, missing=None, unreadable=None)
        rows.append(row)
    return pd.DataFrame(rows)
