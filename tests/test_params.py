"""One source for every value: params.yaml names every field of every section, the dataclass defaults equal its
values, a typo anywhere is an error naming its key path, and params/paper.yaml is the paper's configuration."""
from __future__ import annotations

import dataclasses
import shutil
import typing
from pathlib import Path

import pytest

from pipeline import params as registry
from preprocess.settings import load_yaml, section

REPO = Path(__file__).resolve().parents[1]
PARAMS = load_yaml(REPO / "params.yaml")


def named_entries(kind) -> type | None:
    """X for a `dict[str, X]` field of dataclasses (named entries, e.g. demo.corpora), else None."""
    args = typing.get_args(kind) if typing.get_origin(kind) is dict else ()
    return args[1] if len(args) == 2 and dataclasses.is_dataclass(args[1]) else None


def unspelled(cls, values: dict, where: str, fixed=()) -> list[str]:
    """Fields of `cls` that params.yaml leaves to the dataclass default (at any depth)."""
    out, hints = [], typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in fixed:
            continue
        if f.name not in values:
            out.append(f"{where}.{f.name}")
        elif dataclasses.is_dataclass(hints[f.name]) and isinstance(values[f.name], dict):
            out += unspelled(hints[f.name], values[f.name], f"{where}.{f.name}")
        elif named_entries(hints[f.name]) and isinstance(values[f.name], dict):
            for key, entry in values[f.name].items():
                out += unspelled(named_entries(hints[f.name]), entry, f"{where}.{f.name}.{key}")
    return out


def disagreeing(default, loaded, where: str) -> list[str]:
    """Leaves where a default dataclass differs from the one params.yaml gives."""
    if dataclasses.is_dataclass(default):
        out = []
        for f in dataclasses.fields(default):
            if named_entries(typing.get_type_hints(type(default))[f.name]):
                continue  # named entries (demo.corpora): params.yaml lists them, the default is none
            out += disagreeing(getattr(default, f.name), getattr(loaded, f.name), f"{where}.{f.name}")
        return out
    return [] if default == loaded else [f"{where}: default {default!r}, params.yaml {loaded!r}"]


def test_params_yaml_names_every_field_of_every_section():
    missing = []
    for name, cls in registry.sections().items():
        missing += unspelled(cls, PARAMS.get(name) or {}, name, registry.FIXED.get(name, {}))
    assert missing == []


def test_no_dataclass_default_disagrees_with_params_yaml():
    out = []
    for name, cls in registry.sections().items():
        fixed = registry.FIXED.get(name, {})
        out += disagreeing(cls(**fixed), section(PARAMS, name, cls, **fixed), name)
    assert out == []


def test_every_section_loads_strictly():
    loaded = registry.load_all(PARAMS)
    assert set(loaded) == set(PARAMS)


def leaf_paths(values: dict, where: str = "") -> list[str]:
    """Every mapping's dotted path in `values` (sections and their nested sections)."""
    out = [where] if where else []
    for key, value in values.items():
        if isinstance(value, dict) and value:
            out += leaf_paths(value, f"{where}.{key}" if where else key)
    return out


# Mappings of names (corpora, demo.corpora: a new key is a new entry) and free-form ones are left out; each
# entry of theirs is a section like any other.
NOT_SECTIONS = ("corpora", "demo.corpora", "evaluate.datasets")


@pytest.mark.parametrize("path", [p for p in leaf_paths(PARAMS) if p not in NOT_SECTIONS])
def test_a_typo_anywhere_is_an_error_naming_its_key_path(path):
    import copy

    params = copy.deepcopy(PARAMS)
    node = params
    for part in path.split("."):
        node = node[part]
    node["typo_key"] = 1
    with pytest.raises(ValueError, match=rf"params\.yaml {path.replace('.', '[.]')}: unknown key\(s\) typo_key"):
        registry.load_all(params)


def test_an_unknown_section_is_an_error():
    with pytest.raises(ValueError, match="unknown section.*robustnes"):
        registry.load_all({**PARAMS, "robustnes": {}})


def test_null_means_none_in_the_cluster_section_too():
    """`cluster.scheduler:` left empty is None, as everywhere: no section treats null as "the default"."""
    cluster = registry.load_all({**PARAMS, "cluster": {**PARAMS["cluster"], "memory_limit": None}})["cluster"]
    assert cluster.memory_limit is None


def test_the_paper_file_builds_the_table_4_models(tmp_path):
    """params/paper.yaml applied over params.yaml: R18 + L6-Transformer has the paper's 62.1M parameters, and
    its Table 4 siblings (the file's model with trunk, backend and depth changed) theirs."""
    from models.video import VideoEncoder, VideoEncoderConfig

    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    registry.apply(REPO / "params" / "paper.yaml", tmp_path / "params.yaml")
    paper = registry.load_all(load_yaml(tmp_path / "params.yaml"))
    video = paper["model"].video
    assert (video.trunk, video.backend, video.layers) == ("resnet18", "transformer", 6)

    def millions(cfg: VideoEncoderConfig) -> float:
        return sum(p.numel() for p in VideoEncoder(cfg).parameters()) / 1e6

    assert millions(video) == pytest.approx(62.1, rel=0.02)
    for change, paper_count in [({"backend": "mstcn", "layers": 4}, 36.0), ({"layers": 4}, 45.3),
                                ({"layers": 8}, 78.9), ({"trunk": "resnet50"}, 229.2)]:
        assert millions(dataclasses.replace(video, **change)) == pytest.approx(paper_count, rel=0.02), change
    assert paper["align"].backend == "fan" and paper["track"].detector == "retinaface"
    assert paper["model"].audio.pretrained


def test_apply_keeps_comments_and_refuses_a_typo(tmp_path):
    target = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", target)
    (tmp_path / "over.yaml").write_text("finetune:\n  epochs: 7\n")
    assert registry.apply(tmp_path / "over.yaml", target) == ["finetune.epochs"]
    text = target.read_text()
    assert load_yaml(target)["finetune"]["epochs"] == 7
    assert "# upper bound; early stopping on val AUC ends the run" in text  # the key's comment stays
    before = text
    (tmp_path / "bad.yaml").write_text("finetune:\n  epoch: 7\n")
    with pytest.raises(ValueError, match=r"finetune: unknown key\(s\) epoch"):
        registry.apply(tmp_path / "bad.yaml", target)
    assert target.read_text() == before
