"""The one params.yaml loader: sections into strict (nested, frozen) dataclasses, and stable hashes of them.

Every stage and training script reads its section through `section` / `from_dict`, so an unknown key (a typo)
is an error naming its full path (`track.tracking.iou_treshold`), never a silent fall-back to a default.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import typing
from pathlib import Path

from ruamel.yaml import YAML


def load_yaml(path: str | os.PathLike) -> dict:
    """params.yaml (or any YAML mapping) as plain Python; a missing file is an empty mapping."""
    path = Path(path)
    if not path.exists():
        return {}
    return YAML(typ="safe").load(path.read_text()) or {}


def from_dict(cls, values: dict | None, where: str | None = None, **fixed):
    """Build the dataclass `cls` from a mapping. Nested dataclass fields take nested mappings; lists become
    tuples (the dataclasses are frozen and hashable). `fixed` fields are set by the caller, not by the mapping.
    `where` is the section's path in params.yaml, for the error messages."""
    where = where or cls.__name__
    values = dict(values or {})
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name not in fixed]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"params.yaml {where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(names)}")
    kwargs = {}
    for name, value in values.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            if value is not None and not isinstance(value, dict):
                keys = ", ".join(f.name for f in dataclasses.fields(kind))
                raise ValueError(f"params.yaml {where}.{name} is a section ({keys}), not {value!r}")
            value = from_dict(kind, value, f"{where}.{name}")
        elif _dataclass_values(kind) and isinstance(value, dict):  # dict[str, Section]: named sections
            value = {key: from_dict(_dataclass_values(kind), entry, f"{where}.{name}.{key}")
                     for key, entry in value.items()}
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs, **fixed)


def _dataclass_values(kind):
    """X for a `dict[str, X]` field whose X is a dataclass, else None."""
    args = typing.get_args(kind) if typing.get_origin(kind) is dict else ()
    return args[1] if len(args) == 2 and dataclasses.is_dataclass(args[1]) else None


def section(params: dict, path: str, cls, **fixed):
    """The dataclass `cls` from params.yaml's section at the dotted `path` (e.g. "pretrain.data")."""
    values = params
    for part in path.split("."):
        values = (values or {}).get(part) if isinstance(values, dict) else None
    return from_dict(cls, values, path, **fixed)


def json_hash(value) -> str:
    """The project's one hash of values (fingerprints, config hashes): 16 hex characters of the sha256 of their
    JSON, independent of dict order. Pass several parts as a tuple: it hashes as a JSON list."""
    blob = json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
