"""Fine-tuning resumes exactly after kill -9 (issue 22): the project's own finetune stage (its command, deps
and outs, read from dvc.yaml) in a small DVC project of its own (synthetic shards, a random "pretrained"
encoder, a tiny model, a loader worker, dropout on), `dvc repro finetune` killed with SIGKILL (its whole process
group: dvc, the trainer, the loader worker) in the middle of epoch 1. The next `dvc repro` resumes after epoch 0
and writes the detector.pt an uninterrupted `dvc repro` writes, byte for byte, with the same dvc.lock entries;
one more runs nothing. A state written for other inputs (here: another encoder) is ignored, and said so."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from train.checkpoint import load_resumable, rng_state, save_atomic, set_rng_state

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # dvc and python of this environment

VIDEO = {"stem_channels": 8, "trunk_widths": [8, 8, 16, 16], "width": 32, "heads": 2, "ffn": 64, "layers": 1,
         "dropout": 0.1, "max_frames": 50}
# 8 training samples x 2 clips / batch 4: 4 steps an epoch; min_epochs 1 and patience 2: selection and its
# counter matter from the first epoch (the kept weights are a deep copy, the last epoch's may not win)
FINETUNE = {"init": "pretrained", "encoder": "artifacts/pretrain/encoder.pt", "epochs": 4, "min_epochs": 1,
            "patience": 2, "balance": "none", "batch_size": 4, "clips_per_sample": 2, "num_workers": 1,
            "shuffle_buffer": 16, "eval_batch_size": 8, "log_every": 1, "head": {"hidden": 16, "dropout": 0.5}}


def test_rng_states_survive_a_weights_only_checkpoint(tmp_path):
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    save_atomic({"rng": rng_state()}, tmp_path / "s.pt")
    want = torch.rand(4), np.random.rand(4), random.random()
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    set_rng_state(torch.load(tmp_path / "s.pt", weights_only=True)["rng"])
    got = torch.rand(4), np.random.rand(4), random.random()
    assert torch.equal(want[0], got[0]) and np.array_equal(want[1], got[1]) and want[2] == got[2]


def test_a_state_resumes_only_for_the_same_inputs(tmp_path):
    inputs = {"params_hash": "p", "finetune_index_sha256": "f", "pretrain_index_sha256": None,
              "encoder_sha256": "e" * 64, "processes": 1}
    path = tmp_path / "last.pt"
    save_atomic({**inputs, "epoch": 2}, path)
    state, why = load_resumable(path, inputs)
    assert state["epoch"] == 2 and why.endswith("after epoch 2")
    state, why = load_resumable(path, {**inputs, "encoder_sha256": "d" * 64, "processes": 2})
    assert state is None and "encoder_sha256 eeeeeeeeeeee now dddddddddddd" in why and "processes 1 now 2" in why


def write_shards(root: Path) -> dict:
    """Real and fake corpora, 4 train and 2 val videos each (one 30-frame segment), as crop-stage shards; the
    fakes' mouth area darker. -> the collect index of the finetune role."""
    from preprocess.contract import SAMPLES_PER_FRAME
    from preprocess.shardformat import ShardWriter, encode_sample

    rng = np.random.default_rng(0)
    index: dict[str, list] = {"train": [], "val": []}
    for split, n in (("train", 4), ("val", 2)):
        for label in ("real", "fake"):
            corpus, method = f"syn_{label}", "dark" if label == "fake" else None
            writer = ShardWriter(root / "data" / "shards" / corpus, split, maxcount=100, maxsize=1 << 30)
            for i in range(n):
                video = rng.integers(60, 200, (30, 96, 96), dtype=np.uint8)
                if method:
                    video[:, 40:70, 25:70] //= 2
                audio = rng.standard_normal(30 * SAMPLES_PER_FRAME).astype(np.float32) * 0.1
                key = f"{corpus}__{split}{i}__0000"
                meta = {"key": key, "corpus": corpus, "video_id": f"{split}{i}", "segment": 0, "label": label,
                        "method": method, "split": split}
                writer.write(encode_sample(key, video, audio, np.zeros((30, 20, 2), np.float32), meta))
            for s in writer.close():
                index[split].append({"path": f"data/shards/{corpus}/{s.shard}", "sha256": s.sha256,
                                     "samples": s.samples, "bytes": s.bytes, "corpus": corpus,
                                     "labels": {label: s.samples}, "methods": {method: s.samples} if method else {}})
    return index


def write_encoder(path: Path, seed: int) -> None:
    from models.detector import Detector
    from models.video import VideoEncoderConfig
    from preprocess.settings import from_dict

    torch.manual_seed(seed)
    det = Detector(from_dict(VideoEncoderConfig, VIDEO, "model.video"))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_atomic({"video_encoder": det.encoder.state_dict()}, path)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """The project without its .dvc: code, the finetune stage alone, params, shards, indexes, encoder."""
    root = tmp_path_factory.mktemp("resume") / "base"
    for package in ("models", "preprocess", "train"):  # the stage's code deps
        shutil.copytree(ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["finetune"]
    assert any(isinstance(o, dict) and "artifacts/finetune/state" in o for o in stage["outs"])
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"finetune": stage}}, sort_keys=False))
    params = {"model": {"video": VIDEO}, "pretrain": {"data": {"augment": {"blur_prob": 0.3}}}, "finetune": FINETUNE}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    collect = root / "data" / "collect"
    collect.mkdir(parents=True)
    (collect / "finetune.json").write_text(json.dumps(write_shards(root)))
    (collect / "pretrain.json").write_text(json.dumps({}))
    write_encoder(root / "artifacts" / "pretrain" / "encoder.pt", seed=1)
    return root


def env() -> dict:
    e = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "AVLIPS_NPROC": "1", "OMP_NUM_THREADS": "1",
         "HF_HUB_OFFLINE": "1"}
    e.pop("PYTHONPATH", None)  # `python -m` in the project imports the project's copy of the code
    return e


def project(base: Path, dst: Path) -> Path:
    shutil.copytree(base, dst)
    subprocess.run([BIN / "dvc", "init", "--no-scm", "-q"], cwd=dst, env=env(), check=True)
    return dst


def dvc(root: Path, *args: str) -> str:
    done = subprocess.run([BIN / "dvc", *args], cwd=root, env=env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"dvc {' '.join(args)}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout + done.stderr


def lock_outs(root: Path) -> dict:
    stage = yaml.safe_load((root / "dvc.lock").read_text())["stages"]["finetune"]
    return {o["path"]: o.get("md5") for o in stage["outs"]}


@pytest.mark.slow  # three fine-tuning runs under dvc
def test_kill_9_of_dvc_repro_mid_epoch_then_repro_gives_the_uninterrupted_detector(base, tmp_path):
    a = project(base, tmp_path / "a")
    log_a = dvc(a, "repro")
    assert "epoch 3 done" in log_a or "early stop" in log_a, log_a[-3000:]

    b = project(base, tmp_path / "b")
    proc = subprocess.Popen([BIN / "dvc", "repro", "finetune"], cwd=b, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("epoch 1 step 1/4"):
            os.killpg(proc.pid, signal.SIGKILL)  # dvc, the trainer and its loader worker: no clean-up
            break
    proc.wait(timeout=60)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, "".join(seen)[-3000:]
    state = torch.load(b / "artifacts" / "finetune" / "state" / "last.pt", weights_only=True)
    assert state["epoch"] == 0 and not state["done"], "the kill was meant to land inside epoch 1"
    assert not (b / "artifacts" / "finetune" / "detector.pt").exists()

    log_b = dvc(b, "repro")
    assert "resuming from" in log_b and "after epoch 0" in log_b and "epoch 0 step" not in log_b, log_b[-3000:]
    detector = "artifacts/finetune/detector.pt"
    assert (b / detector).read_bytes() == (a / detector).read_bytes()
    for root in (a, b):  # a finished run leaves no state: the state out is the same empty folder
        assert list((root / "artifacts" / "finetune" / "state").iterdir()) == []
    outs_a, outs_b = lock_outs(a), lock_outs(b)
    for path in (detector, "artifacts/finetune/state"):
        assert outs_a[path] == outs_b[path], path
    rows = (b / "dvclive" / "finetune" / "plots" / "metrics" / "train" / "loss.tsv").read_text().strip().splitlines()
    assert len(rows) == 1 + len(torch.load(b / detector, weights_only=True)["meta"]["history"])  # curves are whole

    lock = (b / "dvc.lock").read_text()
    assert "Running stage" not in dvc(b, "repro")  # idempotent: nothing to rerun, dvc.lock unchanged
    assert (b / "dvc.lock").read_text() == lock


@pytest.mark.slow  # one fine-tuning run, killed, and a fresh one
def test_a_state_for_another_encoder_is_ignored(base, tmp_path):
    c = project(base, tmp_path / "c")
    proc = subprocess.Popen([BIN / "python", "-m", "train.finetune", "--out", "artifacts/finetune", "--live", ""],
                            cwd=c, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    for line in proc.stdout:
        if line.startswith("epoch 1 step 1/4"):
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    proc.stdout.close()
    assert (c / "artifacts" / "finetune" / "state" / "last.pt").exists()
    write_encoder(c / "artifacts" / "pretrain" / "encoder.pt", seed=2)  # another pretrained encoder
    log = dvc(c, "repro")
    assert "is from other inputs (encoder_sha256" in log and "starting fresh" in log and "epoch 0 step 1/4" in log
