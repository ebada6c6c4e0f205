"""The robustness stage (train/robustness.py, the paper's Figure 4) and `predict --corrupt` on the test pipeline
project: the real CREMA-D eval clips as the pipeline resampled, aligned and packed them.

A tiny configuration: 2 types x 2 levels, 3 videos. The detector is the real architecture, tiny and randomly
initialised (its AUCs mean nothing; what is checked is that the right crops reach it and every metric and plot
is written). The eval corpus `cremadt` is all fakes; in this test's copy of the project one video is relabelled
real in the shard manifest, so that an AUC is defined.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from pipeline_project import copy_project, project_env
from test_predict import tiny_detector_file

TINY = {"types": ["blur", "compression"], "levels": {"blur": [7, 13], "compression": [30, 40]},
        "max_videos_per_corpus": 3, "compression_preset": "ultrafast"}


@pytest.fixture(scope="module")
def proj(packed_project, tmp_path_factory):
    root = copy_project(packed_project, tmp_path_factory.mktemp("robust") / "project")
    manifest = root / "data" / "shards" / "cremadt" / "manifest.parquet"
    m = pd.read_parquet(manifest)
    m.loc[m["video_id"] == sorted(m["video_id"])[0], "label"] = "real"
    m.to_parquet(manifest, index=False)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params.update(robustness=TINY, evaluate={"batch_size": 8, "datasets": {}})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    tiny_detector_file(root / "detector.pt", {"val_threshold": 0.0, "init": "scratch"})
    return root


def run_stage(root, detector="detector.pt", out="artifacts/robustness", collect="data/collect"):
    from train import robustness

    torch.set_num_threads(1)
    with project_env(root):
        robustness.main(["--detector", detector, "--out", out, "--metrics", "metrics/robustness.json",
                         "--plots", "plots/robustness", "--png", "plots/robustness_auc.png", "--collect", collect])


@pytest.fixture(scope="module")
def stage(proj):
    run_stage(proj)
    return proj


def test_every_metric_and_plot_is_written(stage):
    from train import report

    m = json.loads((stage / "metrics" / "robustness.json").read_text())
    assert m["detector"]["trained"] and m["videos"]["selected"] == 3 and m["videos"]["listed"] == 4
    assert m["videos"]["scored_clean"] == 3 and "clean frames" in m["protocol"]
    assert m["clean"]["all"]["n_real"] == 1 and m["clean"]["all"]["n_fake"] == 2  # the real one was dealt in
    assert m["clean"]["all"]["auc"] is not None and set(m["clean"]["by_corpus"]) == {"cremadt"}
    for t, levels in TINY["levels"].items():
        assert sorted(m["corruptions"][t]) == ["1", "2"]
        for i, value in enumerate(levels, 1):
            cell = m["corruptions"][t][str(i)]
            assert cell["parameter"] == value and cell["all"]["videos"] == {"total": 3, "scored": 3}
            assert cell["all"]["auc"] is not None
        points = json.loads((stage / "plots" / "robustness" / f"{t}.json").read_text())
        assert [p["level"] for p in points] == [0, 1, 2] and points[0]["auc"] == m["clean"]["all"]["auc"]
    for t in ("blockwise", "jpeg"):  # not evaluated: empty lines, so dvc.yaml's plot always finds its files
        assert json.loads((stage / "plots" / "robustness" / f"{t}.json").read_text()) == []
    assert (stage / "plots" / "robustness_auc.png").read_bytes()[:4] == b"\x89PNG"
    scores = pd.read_parquet(stage / "artifacts" / "robustness" / "scores.parquet")
    assert len(scores) == 3 * 5 and (scores["status"] == "scored").all() and (scores["n_clips"] > 0).all()
    assert not (stage / "artifacts" / "robustness" / "crops").exists()  # keep_crops is off
    text = "\n".join(report.robustness(m))
    assert "| blur |" in text and "| compression |" in text and "from the clean frames" in text


def test_a_rerun_writes_identical_bytes(proj):
    outputs = ["metrics/robustness.json", "plots/robustness/blur.json", "plots/robustness_auc.png",
               "artifacts/robustness-rerun/scores.parquet"]
    run_stage(proj, out="artifacts/robustness-rerun")
    first = {name: (proj / name).read_bytes() for name in outputs}
    run_stage(proj, out="artifacts/robustness-rerun")
    assert {name: (proj / name).read_bytes() for name in outputs} == first


def test_level_0_is_the_clean_path_and_corruptions_change_the_crops(stage):
    """Level 0 renders exactly the crops the crop stage packed; every corrupted level differs from them, and a
    rerun of a corruption gives the same bytes."""
    from preprocess.corrupt import Corruption, RobustnessParams
    from preprocess.corrupted_crops import load_geometry
    from preprocess.shardformat import read_sample
    from train.robustness import corrupted_piece_crops, eval_videos

    params = RobustnessParams(**TINY)
    with project_env(stage):
        v = eval_videos(stage / "data" / "collect").iloc[0]
        video = stage / "data" / "resample" / v.corpus / "video" / f"{v.video_id}.mkv"
        npz = load_geometry(stage / "data" / "align" / v.corpus / "aligned" / f"{v.video_id}.npz")
        manifest = pd.read_parquet(stage / "data" / "shards" / v.corpus / "manifest.parquet")
        packed = [read_sample(stage / "data" / "shards" / v.corpus / r.shard, r.key)["video.npy"]
                  for r in manifest[manifest["video_id"] == v.video_id].sort_values("segment").itertuples()]
        clean = corrupted_piece_crops(video, npz, v.pieces, Corruption("blur", 0), params, v.video_id)
        assert len(clean) == len(packed)
        for ours, theirs in zip(clean, packed):
            assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs)
        for c in params.corruptions():
            bad = corrupted_piece_crops(video, npz, v.pieces, c, params, v.video_id)
            assert all(b.shape == p.shape for b, p in zip(bad, clean))
            assert any(not np.array_equal(b, p) for b, p in zip(bad, clean)), c
        again = corrupted_piece_crops(video, npz, v.pieces, Corruption("compression", 2), params, v.video_id)
        assert all(np.array_equal(a, b) for a, b in
                   zip(again, corrupted_piece_crops(video, npz, v.pieces, Corruption("compression", 2), params, v.video_id)))


def test_keep_crops_stores_the_corrupted_crops_it_scored(stage, tmp_path):
    from preprocess.corrupt import Corruption, RobustnessParams
    from preprocess.corrupted_crops import load_geometry
    from train.robustness import corrupted_piece_crops, eval_videos, score_all
    from train.scoring import load_detector

    params = RobustnessParams(types=["jpeg"], levels={"jpeg": [3]}, keep_crops=True)
    det, _ = load_detector(stage / "detector.pt")
    with project_env(stage):
        videos = eval_videos(stage / "data" / "collect").iloc[:1]
        rows = score_all(det, videos, stage / "data" / "align", stage / "data" / "resample", params, "cpu", 8,
                         tmp_path, progress=False)
        v = videos.iloc[0]
        expected = corrupted_piece_crops(stage / "data" / "resample" / v.corpus / "video" / f"{v.video_id}.mkv",
                               load_geometry(stage / "data" / "align" / v.corpus / "aligned" / f"{v.video_id}.npz"),
                               v.pieces,
                               Corruption("jpeg", 1), params, v.video_id)
    assert list(rows["status"]) == ["scored", "scored"]
    kept = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.npy"))
    assert kept == [f"clean-0/{v.corpus}/{v.video_id}.npy", f"jpeg-1/{v.corpus}/{v.video_id}.npy"]
    assert np.array_equal(np.load(tmp_path / kept[1]), np.concatenate(expected))


def test_untrained_detector_writes_valid_empty_outputs(proj, tmp_path):
    from train.scoring import save_untrained

    save_untrained(proj / "untrained.pt", "no corpus with role finetune", {})
    run_stage(proj, "untrained.pt", "artifacts/robustness-untrained")
    m = json.loads((proj / "metrics" / "robustness.json").read_text())
    assert m["detector"] == {"trained": False, "reason": "no corpus with role finetune"}
    assert json.loads((proj / "plots" / "robustness" / "blur.json").read_text()) == []
    assert pd.read_parquet(proj / "artifacts" / "robustness-untrained" / "scores.parquet").empty
    from train import report

    assert "Nothing trained: no corpus with role finetune" in "\n".join(report.robustness(m))


def test_no_eval_corpus_writes_valid_empty_outputs(proj):
    from train import report

    (proj / "no_eval").mkdir()
    (proj / "no_eval" / "eval.json").write_text(json.dumps({"train": [], "val": [], "test": []}))
    run_stage(proj, out="artifacts/robustness-none", collect="no_eval")
    m = json.loads((proj / "metrics" / "robustness.json").read_text())
    assert m["detector"]["trained"] and m["videos"] == {"listed": 0, "selected": 0, "scored_clean": 0}
    assert m["clean"]["all"]["auc"] is None and m["corruptions"]["blur"]["1"]["all"]["videos"]["total"] == 0
    assert [p["auc"] for p in json.loads((proj / "plots" / "robustness" / "blur.json").read_text())] == [None] * 3
    assert (proj / "plots" / "robustness_auc.png").is_file()
    assert "No corpus with role eval." in "\n".join(report.robustness(m))


def test_predict_corrupt_level_0_matches_the_clean_prediction_and_a_corruption_changes_it(proj, clips):
    from test_predict import run_cli

    def predict(*extra):
        rc, out, err = run_cli(["predict", str(clips.grid[0]), "--detector", str(proj / "detector.pt"), "--json",
                                *extra])
        assert rc == 0, err
        return json.loads(out)

    with project_env(proj):
        clean, zero, jpeg = predict(), predict("--corrupt", "blur:0"), predict("--corrupt", "jpeg:2")
        rc, out, err = run_cli(["predict", str(clips.grid[0]), "--detector", str(proj / "detector.pt"),
                                "--corrupt", "sharpen:1"])
    assert rc == 2 and "unknown corruption type 'sharpen'" in err and "Traceback" not in err
    assert clean["corruption"] is None and zero["corruption"] == "blur:0" and jpeg["corruption"] == "jpeg:2"
    logits = [[c["logit"] for c in d["videos"][0]["timeline"]] for d in (clean, zero, jpeg)]
    assert logits[0] and logits[0] == logits[1] and logits[2] != logits[0] and len(logits[2]) == len(logits[0])


def test_inspect_draws_the_corrupted_strip_beside_the_clean_one(stage, tmp_path):
    from test_predict import run_cli

    key = pd.read_parquet(stage / "data" / "shards" / "cremadt" / "manifest.parquet")["key"].iloc[0]
    with project_env(stage):
        rc, out, err = run_cli(["shards", "inspect", "cremadt", "--key", key, "--png", str(tmp_path / "s.png"),
                                "--corrupt", "blur:2", "--json"])
    assert rc == 0, err
    info = json.loads(out)
    assert info["corruption"] == "blur:2" and info["mean_abs_difference"] > 0
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
