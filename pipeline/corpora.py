"""The corpus registry in params.yaml (`corpora:`): names, roles, labels and splits of the raw video corpora."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ruamel.yaml import YAML

from preprocess import paths
from preprocess.paths import project_path
from preprocess.settings import load_yaml

CORPUS_NAME = re.compile(r"^(?!.*__)[a-z0-9][a-z0-9_-]*$")  # no "__": it separates the parts of sample keys
DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._+-]*$")  # a metrics key and part of a plot file name
ROLES = ("pretrain", "finetune", "eval")
LABELS = ("real", "fake")
# Split fractions when a corpus names none: detection corpora need a test split, pretraining only val.
DEFAULT_SPLITS = {
    "pretrain": {"val": 0.05, "test": 0.0},
    "finetune": {"val": 0.1, "test": 0.2},
    "eval": {"val": 0.0, "test": 1.0},
}


@dataclass(frozen=True)
class SplitSpec:
    val: float
    test: float
    seed: int = 0
    group_by: str | None = None  # regex on the relative path; group 1 (or the whole match) is the group
    file: str | None = None  # CSV of group,split (official splits, e.g. FaceForensics++): replaces the fractions


@dataclass(frozen=True)
class Corpus:
    name: str
    raw_dir: str
    pattern: str
    role: str
    label: str
    method: str | None
    labels: str | None = None  # CSV relpath,label[,method]: per-video overrides of label and method
    dataset: str | None = None  # eval corpora with the same dataset form one Table 3 column (corpus add --dataset)
    split: SplitSpec = field(default_factory=lambda: SplitSpec(0.0, 0.0))

    def raw_path(self) -> Path:
        return project_path(self.raw_dir)


def yaml_roundtrip() -> YAML:
    yaml = YAML()  # round-trip mode keeps comments and key order
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def load_params(path: Path | None = None) -> dict:
    return load_yaml(path or paths.params_path())


def _text(value) -> str | None:
    return None if value is None else str(value)  # ruamel's quoted-scalar types are not plain str


def corpus_from_dict(name: str, cfg: dict) -> Corpus:
    role = _text(cfg.get("role", "pretrain"))
    split = {**DEFAULT_SPLITS[role], **(cfg.get("split") or {})}
    return Corpus(
        name=name,
        raw_dir=str(cfg["raw_dir"]),
        pattern=_text(cfg.get("pattern", "**/*.mp4")),
        role=role,
        label=_text(cfg.get("label", "real")),
        method=_text(cfg.get("method")),
        labels=_text(cfg.get("labels")),
        dataset=_text(cfg.get("dataset")),
        split=SplitSpec(float(split["val"]), float(split["test"]), int(split.get("seed", 0)),
                        _text(split.get("group_by")), _text(split.get("file"))),
    )


def load_corpora(params: dict | None = None) -> dict[str, Corpus]:
    params = load_params() if params is None else params
    return {name: corpus_from_dict(name, cfg) for name, cfg in (params.get("corpora") or {}).items()}


def get_corpus(name: str, params: dict | None = None) -> Corpus:
    corpora = load_corpora(params)
    if name not in corpora:
        known = ", ".join(sorted(corpora)) or "none"
        raise KeyError(f"corpus '{name}' is not registered in params.yaml (registered: {known})")
    return corpora[name]
