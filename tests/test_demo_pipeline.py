"""The demo corpus through the real stages on a tiny config: demo -> resample -> track (dlib) -> align -> crop.
Needs nothing beside the pip install (no ../shared, no downloads), and every generated video must reach a shard:
dlib's detector has to find the synthetic faces, and the lip-sync fakes must keep a face track too."""
from __future__ import annotations

import pandas as pd
import pytest
import yaml
from pipeline_project import REPO, local_client, project_env

pytestmark = pytest.mark.slow  # the demo through every preprocessing stage

TINY_DEMO = {"seed": 1, "identities": 2, "val_speakers": 1, "test_speakers": 1, "seconds": 2.0, "fps": 30, "size": 256, "sample_rate": 44100, "crf": 20,
             "corpora": {"demo_pretrain": {"clips": 1, "methods": []},
                         "demo_eval": {"clips": 1, "methods": ["lowres_seam", "jitter", "lipsync"]}}}


def tiny_params() -> dict:
    """The repository's params (its demo corpus registration and stage sections), with a tiny demo."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["corpora"] = {name: params["corpora"][name] for name in TINY_DEMO["corpora"]}
    params["demo"] = TINY_DEMO
    params["crop"] = {"maxcount": 4, "maxsize": 100_000_000}
    return params


def test_every_demo_video_reaches_a_shard(tmp_path):
    from preprocess import paths
    from pipeline import stages
    from preprocess.demo import stage as demo

    root = tmp_path / "project"
    (root / "data_manifests").mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    with project_env(root):
        stages.run_demo(workers=1)
        assert (root / demo.SHEET).is_file()
        with local_client() as client:
            for name in TINY_DEMO["corpora"]:
                for stage in ("resample", "track", "align"):
                    records = stages.run(stage, name, client)
                    bad = [(r.video_id, r.reason) for r in records if r.status != "ok"]
                    assert not bad, f"{stage}@{name}: {bad}"
                stages.run("crop", name, client)
                manifest = pd.read_parquet(paths.source_manifest_path(name))
                shards = pd.read_parquet(paths.project_root() / "data" / "shards" / name / "manifest.parquet")
                assert set(shards.video_id) == set(manifest.video_id)
                assert len(manifest) == 2 * (1 + len(TINY_DEMO["corpora"][name]["methods"]))
                # labels and methods from the demo's labels file reach the samples
                merged = shards.merge(manifest[["video_id", "label", "method"]], on="video_id", suffixes=("", "_src"))
                assert (merged.label == merged.label_src).all()
                assert (merged.method.fillna("") == merged.method_src.fillna("")).all()
        sync = pd.read_parquet(paths.stage_dir("track", "demo_eval") / "tracks.parquet")
        assert (sync.n_faces == 1).all()
