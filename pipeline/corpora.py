"""The corpus registry in params.yaml (`corpora:`): names, roles, labels and splits of the raw video corpora."""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from ruamel.yaml import YAML

from preprocess import paths
from preprocess.paths import project_path
from preprocess.settings import from_dict, load_yaml

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
    """One `corpora:` entry through the strict loader: an unknown key is an error naming its path
    (`corpora.NAME.split.tset`). Split fractions the entry leaves out follow its role."""
    where = f"corpora.{name}"
    cfg = dict(cfg or {})
    if cfg.get("raw_dir") is None:
        raise ValueError(f"params.yaml {where}: no raw_dir (the folder of the corpus's videos)")
    role = _text(cfg.get("role", "pretrain"))
    if role not in ROLES:
        raise ValueError(f"params.yaml {where}.role is {role!r}; choose one of {', '.join(ROLES)}")
    split = cfg.get("split") or {}
    if not isinstance(split, dict):
        raise ValueError(f"params.yaml {where}.split is a section (val, test, seed, group_by, file), not {split!r}")
    defaults = {"pattern": "**/*.mp4", "role": role, "label": "real", "method": None}
    corpus = from_dict(Corpus, {**defaults, **cfg, "split": {**DEFAULT_SPLITS[role], **split}}, where, name=name)
    s = corpus.split
    return replace(corpus, raw_dir=str(corpus.raw_dir), pattern=_text(corpus.pattern), role=role,
                   label=_text(corpus.label), method=_text(corpus.method), labels=_text(corpus.labels),
                   split=SplitSpec(float(s.val), float(s.test), int(s.seed), _text(s.group_by), _text(s.file)))


def load_corpora(params: dict | None = None) -> dict[str, Corpus]:
    params = load_params() if params is None else params
    return {name: corpus_from_dict(name, cfg) for name, cfg in (params.get("corpora") or {}).items()}


def get_corpus(name: str, params: dict | None = None) -> Corpus:
    corpora = load_corpora(params)
    if name not in corpora:
        known = ", ".join(sorted(corpora)) or "none"
        raise KeyError(f"corpus '{name}' is not registered in params.yaml (registered: {known})")
    return corpora[name]
