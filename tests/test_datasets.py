"""Table 3's columns as users register them: `corpus add --dataset NAME` groups eval corpora (reals and fakes in
separate folders) into one column; `evaluate.datasets` still overrides; a column with one class only is
reported as such in the metrics and the report, never dropped."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from conftest import copy_clip

from train import report
from train.datasets import table3_columns
from train.evaluate import dataset_metrics


def test_eval_corpora_group_by_dataset_and_evaluate_datasets_overrides():
    corpora = {"celeb_real": "Celeb-DF", "celeb_fake": "Celeb-DF", "dfdc": None}
    assert table3_columns({}, corpora) == {"Celeb-DF": ["celeb_fake", "celeb_real"], "dfdc": ["dfdc"]}
    assert table3_columns({"mine": ["dfdc", "celeb_fake"]}, corpora) == {"mine": ["dfdc", "celeb_fake"]}
    assert table3_columns({}, {}) == {}


def test_a_single_class_column_is_reported_as_such():
    df = pd.DataFrame({"corpus": ["a_real", "a_fake", "b_real"], "split": "test", "status": "scored",
                       "label": ["real", "fake", "real"], "score": [-1.0, 1.0, 0.5]})
    cols = dataset_metrics(df, {}, {"a_real": "A", "a_fake": "A", "b_real": None}, None)
    assert list(cols) == ["A", "b_real"]
    assert cols["A"]["auc"] == 1.0 and cols["A"]["auc_note"] is None
    assert cols["b_real"]["auc"] is None and cols["b_real"]["n_real"] == 1
    assert cols["b_real"]["auc_note"].startswith("only real videos scored (1 real, 0 fake)")
    text = "\n".join(report.table3({"pretrained": {"detector": {"trained": True}, "cross_dataset": cols}}))
    assert "| | A | b_real | Avg |" in text and "| ours | 100.0 | - (real only) | 100.0 |" in text
    assert "(Avg: mean of the 1 columns with an AUC)" in text
    assert "No AUC for b_real: only real videos scored (1 real, 0 fake)" in text


def test_dataset_is_stored_in_the_registry_and_checked(project):
    from pipeline import cli
    from pipeline.corpora import load_corpora

    raw = project / "raw"
    (raw / "a.mp4").parent.mkdir(parents=True)
    (raw / "a.mp4").write_bytes(b"not a video")  # unreadable is fine: a manifest row all the same
    assert cli.main(["corpus", "add", "c_fake", "raw", "--role", "eval", "--label", "fake", "--dataset",
                     "Celeb-DF v2"]) == 0
    assert yaml.safe_load((project / "params.yaml").read_text())["corpora"]["c_fake"]["dataset"] == "Celeb-DF v2"
    assert cli.main(["corpus", "add", "c_fake", "raw"]) == 0  # a rescan keeps it
    assert load_corpora()["c_fake"].dataset == "Celeb-DF v2"
    assert cli.main(["corpus", "add", "p", "raw", "--role", "pretrain", "--dataset", "X"]) == 2  # eval only
    assert cli.main(["corpus", "add", "q", "raw", "--role", "eval", "--dataset", "a/b"]) == 2  # a file name part
    assert set(load_corpora()) == {"c_fake"}


@pytest.mark.slow
def test_a_real_and_a_fake_corpus_with_one_dataset_give_its_auc_in_metrics_and_report(clips, project):
    """Two CREMA-D clips registered twice through the CLI, as real and as fake corpora with the same --dataset,
    through resample -> track -> align -> crop -> collect, scored by a tiny random detector (its scores mean
    nothing; the column's AUC must exist) with the evaluate and report stages' own commands."""
    import torch

    from models.detector import Detector, DetectorConfig
    from models.video import VideoEncoderConfig
    from pipeline import cli, collect, stages
    from train import evaluate
    from train.scoring import save_detector

    for clip in clips.cremad[:2]:
        copy_clip(clip, project / "raw")
    for name, label in (("crema_real", "real"), ("crema_fake", "fake")):
        extra = ["--method", "Emotion"] if label == "fake" else []
        assert cli.main(["corpus", "add", name, "raw", "--pattern", "*.flv", "--role", "eval", "--label", label,
                         "--dataset", "CREMA-D", *extra]) == 0
        for stage in ("resample", "track", "align", "crop"):
            assert [r.status for r in stages.run(stage, name)] == ["ok", "ok"], stage
    assert collect.main([]) == 0
    torch.manual_seed(0)
    tiny = VideoEncoderConfig(stem_channels=8, trunk_widths=(8, 8, 16, 16), width=32, heads=4, ffn=64, layers=2,
                              max_frames=50)
    save_detector(project / "detector.pt", Detector(tiny, DetectorConfig(hidden=16)), {"note": "test"})

    evaluate.main(["--params", "params.yaml", "--detector", "detector.pt", "--metrics", "metrics/evaluate.json"])
    metrics = json.loads((project / "metrics" / "evaluate.json").read_text())
    column = metrics["cross_dataset"]["CREMA-D"]
    assert list(metrics["cross_dataset"]) == ["CREMA-D"]
    assert column["corpora"] == ["crema_fake", "crema_real"] and (column["n_real"], column["n_fake"]) == (2, 2)
    assert column["auc"] is not None and column["auc_note"] is None
    assert (project / "plots" / "evaluate" / "dataset_CREMA-D.json").is_file()

    report.main(["--params", "params.yaml", "--out", "reports/results.md"])
    text = (project / "reports" / "results.md").read_text()
    assert "| CREMA-D | Avg |" in text and f"| {report.pct(column['auc'])} | {report.pct(column['auc'])} |" in text
    assert "CREMA-D: 4 of 4 videos scored (2 real, 2 fake)." in text
