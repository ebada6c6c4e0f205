"""Every params.yaml section and the dataclass that reads it, and applying a file of overrides:

    python -m pipeline params check                      # load every section strictly: a typo names its key path
    python -m pipeline params apply params/paper.yaml    # the paper's configuration over params.yaml (comments kept)

params.yaml holds every value a user can change; the dataclasses hold the types and checks, and their defaults
equal params.yaml's values (tests/test_params.py), so code that builds one without params gets the same run.
"""
from __future__ import annotations

import io
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from pipeline.corpora import load_corpora, yaml_roundtrip
from preprocess import paths
from preprocess.fileio import write_bytes_atomic
from preprocess.settings import load_yaml, section

# Fields a stage sets itself, per corpus, rather than reading them from params.yaml.
FIXED = {"resample": {"require_audio": True}}
PAPER = Path(__file__).resolve().parents[1] / "params" / "paper.yaml"  # ships with the code


def sections() -> dict[str, type]:
    """{section name: its dataclass} for every section but `corpora` (one Corpus per entry: pipeline.corpora).
    Imported here, not at the top: the model and training configs bring torch."""
    from models.avclip import AVModelConfig
    from pipeline.cluster import ClusterSettings
    from preprocess.align.align_params import AlignParams
    from preprocess.corrupt import RobustnessParams
    from preprocess.crop.stage import CropParams
    from preprocess.demo.plan import DemoParams
    from preprocess.resample.convert import ResampleParams
    from preprocess.track.track_params import TrackParams
    from preprocess.weights import WeightsParams
    from train.av_mismatch import MismatchParams
    from train.evaluate import EvaluateParams
    from train.finetune_config import FinetuneConfig
    from train.pretrain_config import PretrainConfig
    from train.report import ProtocolParams

    return {"demo": DemoParams, "resample": ResampleParams, "weights": WeightsParams, "track": TrackParams,
            "align": AlignParams, "crop": CropParams, "model": AVModelConfig, "pretrain": PretrainConfig,
            "finetune": FinetuneConfig, "av_mismatch": MismatchParams, "evaluate": EvaluateParams, "protocol": ProtocolParams,
            "robustness": RobustnessParams, "cluster": ClusterSettings}


def load_all(params: dict) -> dict:
    """Every section of `params` through the strict loader: an unknown section or key, at any depth, is a
    ValueError naming its path (`pretrain.data.open_shard`, `corpora.NAME.split.tset`)."""
    known = sections()
    unknown = sorted(set(params) - set(known) - {"corpora"})
    if unknown:
        raise ValueError(f"params.yaml: unknown section(s) {', '.join(unknown)}; known: corpora, {', '.join(known)}")
    loaded = {name: section(params, name, cls, **FIXED.get(name, {})) for name, cls in known.items()}
    loaded["corpora"] = load_corpora(params)
    return loaded


def merge(target: CommentedMap, overrides: dict, where: str = "") -> None:
    """Write `overrides` into the round-trip mapping `target`: mappings key by key, anything else replaced
    whole. Comments stay on their keys; a flow-style list stays flow-style."""
    for key, value in overrides.items():
        path = f"{where}{key}"
        old = target.get(key)
        if isinstance(value, dict):
            if key not in target or old is None:
                target[key] = CommentedMap()
            elif not isinstance(old, dict):
                raise ValueError(f"{path} is a section in the overrides but {old!r} in params.yaml")
            merge(target[key], value, f"{path}.")
        elif isinstance(value, list):
            seq = CommentedSeq(value)
            if isinstance(old, CommentedSeq) and old.fa.flow_style():
                seq.fa.set_flow_style()
            target[key] = seq
        else:
            target[key] = value


def paper_params(params_path: Path | None = None) -> dict:
    """params.yaml (plain values) with params/paper.yaml applied: what `params apply` would make of it."""
    params = load_yaml(params_path or paths.params_path())
    merge(params, load_yaml(PAPER))
    return params


def apply(overrides_path: Path, params_path: Path | None = None) -> list[str]:
    """Write the overrides file into params.yaml (checked with every section's loader before writing).
    Returns the dotted keys it set."""
    params_path = params_path or paths.params_path()
    yaml = yaml_roundtrip()
    overrides = yaml.load(Path(overrides_path)) or {}  # round-trip: numbers keep their spelling (0.00001)
    doc = yaml.load(params_path)
    merge(doc, overrides)
    text = io.StringIO()
    yaml.dump(doc, text)
    load_all(YAML(typ="safe").load(text.getvalue()) or {})  # a typo in the overrides fails before any write
    write_bytes_atomic(params_path, text.getvalue().encode())
    return _leaves(overrides)


def _leaves(values: dict, where: str = "") -> list[str]:
    out = []
    for key, value in values.items():
        out += _leaves(value, f"{where}{key}.") if isinstance(value, dict) else [f"{where}{key}"]
    return out


def main(args) -> int:
    if args.action == "check":
        loaded = load_all(load_yaml(paths.params_path()))
        print(f"params.yaml: {len(loaded)} sections, every key known")
        return 0
    keys = apply(Path(args.file))
    print(f"params.yaml: {len(keys)} values set from {args.file} ({', '.join(keys)})")
    return 0
