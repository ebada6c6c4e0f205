"""The main job end to end: `dvc repro` of the project's own dvc.yaml, in a temporary copy of the project, on a
tinier demo than the default (same stages, same code, smaller corpus and models). Needs nothing beside the pip
install: no ../shared, no downloads. Then a second `dvc repro` runs nothing, and editing one corpus's params
touches that corpus's stages only."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # dvc of this environment

pytestmark = pytest.mark.slow  # dvc repro of the whole pipeline

TINY = {
    "demo": {"seed": 0, "identities": 3, "val_speakers": 1, "test_speakers": 1, "seconds": 4.5, "fps": 30, "size": 256, "sample_rate": 44100, "crf": 20,
             "corpora": {"demo_pretrain": {"clips": 1, "methods": []},
                         "demo_finetune": {"clips": 1, "methods": ["lowres_seam", "jitter"]},
                         "demo_eval": {"clips": 1, "methods": ["lowres_seam", "jitter", "lipsync"]}}},
    "model.video": {"layers": 1, "width": 32, "heads": 2, "ffn": 64, "stem_channels": 8,
                    "trunk_widths": [8, 8, 16, 16]},
    "model.audio": {"hidden": 32, "layers": 1, "heads": 2, "ffn": 64, "conv_dim": 32},
    "pretrain": {"epochs": 2, "data": {"batch_size": 2, "num_workers": 0}},
    "finetune": {"epochs": 2, "clips_per_sample": 2, "batch_size": 8, "num_workers": 0},
}


def tiny_params(params: dict) -> dict:
    for dotted, values in TINY.items():
        section = params
        for key in dotted.split("."):
            section = section[key]
        for key, value in values.items():
            if isinstance(value, dict) and isinstance(section.get(key), dict) and key != "corpora":
                section[key].update(value)
            else:
                section[key] = value
    return params


def dvc(root: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "AVLIPS_WORKERS": "2"}
    env.pop("AVLIPS_ROOT", None)
    done = subprocess.run(["dvc", *args], cwd=root, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, f"dvc {' '.join(args)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout + done.stderr


def copy_project(dst: Path) -> Path:
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True)
    for rel in tracked.stdout.split("\0"):
        if rel and (REPO / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dst / rel)
    (dst / "dvc.lock").unlink(missing_ok=True)  # the copy computes its own
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost"]
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)  # DVCLive and `dvc` want a repository with a commit
    subprocess.run([*git, "add", "-A"], cwd=dst, check=True)
    subprocess.run([*git, "commit", "-qm", "project copy"], cwd=dst, check=True)
    return dst


@pytest.fixture(scope="module")
def main_job(tmp_path_factory) -> tuple[Path, str]:
    root = copy_project(tmp_path_factory.mktemp("mainjob"))
    params = tiny_params(yaml.safe_load((root / "params.yaml").read_text()))
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root, dvc(root, "repro")


def test_the_dag_runs_from_raw_video_to_the_report(main_job):
    root, log = main_job
    metrics = json.loads((root / "metrics" / "evaluate.json").read_text())
    assert metrics["detector"]["trained"] and metrics["detector"]["init"] == "pretrained"
    # every eval and finetune-test video is accounted for, and all of the demo's were scored
    assert metrics["videos"]["scored"] == metrics["videos"]["total"] > 0
    eval_corpus = metrics["groups"]["eval"]["by_corpus"]["demo_eval"]
    assert eval_corpus["n_real"] == 3 and eval_corpus["n_fake"] == 9 and eval_corpus["auc"] is not None
    assert set(metrics["groups"]["eval"]["by_method"]) == {"lowres_seam", "jitter", "lipsync"}
    lomo = json.loads((root / "metrics" / "lomo" / "jitter.json").read_text())
    assert lomo["detector"]["exclude_methods"] == ["jitter"]
    # the from-scratch baseline, with the metrics' shape, and the zero-shot score beside every AUC
    scratch = json.loads((root / "metrics" / "baselines" / "scratch.json").read_text())
    assert scratch["detector"]["init"] == "scratch" and scratch.keys() == metrics.keys()
    for m in (metrics, scratch, lomo):
        assert "av_mismatch_auc" in m["groups"]["finetune_test"]["overall"]
    lipsync = metrics["groups"]["eval"]["by_method"]["lipsync"]
    assert lipsync["n_av_mismatch"] == 6 and lipsync["av_mismatch_auc"] is not None
    import pandas as pd

    scores = pd.read_parquet(root / "artifacts" / "evaluate" / "scores.parquet")
    assert scores["av_mismatch"].between(0, 1).all() and (scores["av_reason"] == "").all()
    report = (root / "reports" / "results.md").read_text()
    assert "Table 1" in report and "Table 2" in report and "Table 3" in report
    assert "| scratch |" in report and "zero-shot AV mismatch" in report
    for picture in ("plots/crops/demo_eval.png", "plots/demo/contact_sheet.png"):
        assert (root / picture).stat().st_size > 1000, picture
    assert list((root / "plots" / "evaluate").glob("*.json")), "no ROC curve"
    encoder = root / "artifacts" / "pretrain" / "encoder.pt"
    assert encoder.is_file() and "NOT pretrained" in log  # the random-init audio encoder is said out loud


def test_a_second_repro_runs_nothing_and_one_corpus_edit_reruns_that_corpus(main_job):
    root, _ = main_job
    assert "Running stage" not in dvc(root, "repro")
    lock = (root / "dvc.lock").read_text()
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["corpora"]["demo_eval"]["split"]["seed"] = 7
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    changed = {line.strip().rstrip(":") for line in dvc(root, "status").splitlines()
               if line and not line.startswith((" ", "\t"))}
    # demo writes every demo corpus's manifest, so it reads each one's params, and collect lists every corpus's
    # role; no stage of another corpus is touched
    assert changed == {"demo", "resample@demo_eval", "track@demo_eval", "crop@demo_eval", "collect"}, changed
    assert (root / "dvc.lock").read_text() == lock
