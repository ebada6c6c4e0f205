"""shards inspect counts, for pretrain corpora, the clips shorter than pretrain.data.min_frames (the trainer
leaves them out): on the pipeline's shards of the 75-frame GRID clips."""
from __future__ import annotations

import pytest
from ruamel.yaml import YAML
from pipeline_project import copy_project, project_env


def _summary(root):
    from pipeline import shard_inspect

    with project_env(root):
        return shard_inspect.summary(["gridt", "cremadt"]), shard_inspect.render(shard_inspect.summary(["gridt"]))


def test_under_min_frames_follows_the_param(packed_project, tmp_path):
    root = copy_project(packed_project, tmp_path / "project")
    params = root / "params.yaml"
    yaml = YAML()
    doc = yaml.load(params.read_text())
    for min_frames, dropped in ((100, 6), (75, 0), (76, 6)):  # the GRID clips have 75 frames each
        doc.setdefault("pretrain", {}).setdefault("data", {})["min_frames"] = min_frames
        with open(params, "w") as f:
            yaml.dump(doc, f)
        result, text = _summary(root)
        grid = result["gridt"]
        assert grid["pretrain_min_frames"] == min_frames
        assert sum(s["under_min_frames"] for s in grid["splits"].values()) == dropped
        assert sum(s["samples"] for s in grid["splits"].values()) == 6
        assert "under_min_frames" not in result["cremadt"]["splits"]["test"]  # an eval corpus: not pretraining
        assert f"pretrain.data.min_frames = {min_frames}" in text
