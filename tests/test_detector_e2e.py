"""Fine-tuning, evaluation and the report end to end on the shards the real pipeline made from the session's
clips (the test pipeline project), plus fakes this test makes from them.

The fakes: a lip-sync-deepfake-like artifact applied to the mouth crops in the shards (not to the source
videos, so the pipeline runs once for the session): `Seam` shrinks the mouth area to a quarter and enlarges
it back (lost detail) and pastes it with a visible seam (a darker 2-px frame); `Jitter` shifts the mouth area
by up to 2 px, drawn anew every frame. Corpora: grid_real / grid_fake (finetune; every GRID clip real and with
both artifacts; speakers held back per split: 3 train, 1 val, 2 test), crema_real / crema_fake (eval: the
CREMA-D clips, whose faceless test video was dropped by the track stage), and the GRID pretraining corpus
(reals for balance).
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from ruamel.yaml import YAML
from pipeline_project import NO_FACE, npy_bytes, read_samples

from models.presets import save_tiny_wav2vec2
from train import evaluate as ev
from train import finetune as ft
from train import report
from train.data import ShardInfo
from train.scoring import load_detector

ROOT = Path(__file__).resolve().parents[1]
VIDEO = {"stem_channels": 8, "trunk_widths": [8, 16, 16, 32], "width": 64, "heads": 4, "ffn": 128, "layers": 2,
         "dropout": 0.1, "max_frames": 50}
# the 6 GRID clips (speakers) in name order -> split: held-back speakers for val and test
SPEAKER_SPLITS = ("train", "train", "train", "val", "test", "test")
MOUTH = (slice(30, 70), slice(22, 74))  # rows, cols of the mouth area in the 96x96 crop (mouth-centred)


def seam(video: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = video.copy()
    h, w = 70 - 30, 74 - 22
    for frame in out:
        small = cv2.resize(frame[MOUTH], (w // 4, h // 4), interpolation=cv2.INTER_AREA)
        patch = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        for edge in (np.s_[:2, :], np.s_[-2:, :], np.s_[:, :2], np.s_[:, -2:]):
            patch[edge] //= 2  # the blending seam: a darker 2-px frame around the pasted mouth
        frame[MOUTH] = patch
    return out


def jitter(video: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = video.copy()
    for frame, src in zip(out, video):
        dy, dx = rng.integers(-2, 3, size=2)
        frame[MOUTH] = src[30 + dy:70 + dy, 22 + dx:74 + dx]
    return out


def write_shard(path: Path, samples: list[dict]) -> dict:
    import hashlib

    import webdataset as wds

    path.parent.mkdir(parents=True, exist_ok=True)
    with wds.TarWriter(str(path)) as w:
        for s in samples:
            w.write(s)
    data = path.read_bytes()
    return {"path": str(path), "sha256": hashlib.sha256(data).hexdigest(), "samples": len(samples),
            "bytes": len(data)}


def derive(raw: list[dict], corpus: str, label: str, method, split_of, artifact=None, seed=0) -> dict[str, list]:
    """The raw pipeline samples as corpus `corpus` (new keys and json), the artifact applied: {split: samples}."""
    rng = np.random.default_rng(seed)
    out: dict[str, list] = {}
    for s in raw:
        meta = json.loads(bytes(s["json"]))
        video = np.load(io.BytesIO(bytes(s["video.npy"])), allow_pickle=False)
        if artifact is not None:
            video = artifact(video, rng)
        split = split_of(meta)
        key = f"{corpus}__{meta['video_id']}__{meta['segment']:04d}"
        meta.update(key=key, corpus=corpus, label=label, method=method, split=split)
        out.setdefault(split, []).append({"__key__": key, "video.npy": npy_bytes(video),
                                          "audio.npy": bytes(s["audio.npy"]), "json": json.dumps(meta).encode()})
    return out


def copy_tables(src_root: Path, src: str, dst_root: Path, dst: str, label: str, method, split_of_id) -> None:
    """The source manifest and crop status of corpus `src` as those of `dst` (labels, splits replaced)."""
    m = pd.read_parquet(src_root / "data_manifests" / f"{src}.parquet")
    m["label"], m["method"], m["split"] = label, method, [split_of_id(v) for v in m["video_id"]]
    (dst_root / "data_manifests").mkdir(parents=True, exist_ok=True)
    m.to_parquet(dst_root / "data_manifests" / f"{dst}.parquet")
    (dst_root / "data" / "crop" / dst).mkdir(parents=True, exist_ok=True)
    shutil.copy(src_root / "data" / "crop" / src / "status.parquet",
                dst_root / "data" / "crop" / dst / "status.parquet")


@pytest.fixture(scope="module")
def proj(packed_project, clips, tmp_path_factory):
    src = packed_project
    root = tmp_path_factory.mktemp("detector")
    collect = json.loads((src / "data" / "collect" / "pretrain.json").read_text())
    grid_raw = read_samples([ShardInfo(str(src / e["path"]), e["samples"]) for sp in ("train", "val")
                             for e in collect.get(sp, [])], decode=False)
    evalc = json.loads((src / "data" / "collect" / "eval.json").read_text())
    crema_raw = read_samples([ShardInfo(str(src / e["path"]), e["samples"]) for e in evalc["test"]], decode=False)
    assert len(grid_raw) == 6
    speaker_split = dict(zip((clip.stem for clip in clips.grid), SPEAKER_SPLITS))
    grid_split = lambda m: speaker_split[m["video_id"].split("-")[0]]  # noqa: E731
    corpora = {
        "grid_real": ("finetune", derive(grid_raw, "grid_real", "real", None, grid_split)),
        "grid_fake": ("finetune", {}),
        "crema_real": ("eval", derive(crema_raw, "crema_real", "real", None, lambda m: "test")),
        "crema_fake": ("eval", derive(crema_raw, "crema_fake", "fake", "Seam", lambda m: "test", seam, 1)),
    }
    for method, art, seed in (("Seam", seam, 2), ("Jitter", jitter, 3)):
        for split, samples in derive(grid_raw, "grid_fake", "fake", method, grid_split, art, seed).items():
            for s in samples:  # two fakes of one video: one video id per method
                meta = json.loads(s["json"])
                meta["video_id"] = f"{meta['video_id']}-{method.lower()}"
                meta["key"] = s["__key__"] = f"grid_fake__{meta['video_id']}__{meta['segment']:04d}"
                s["json"] = json.dumps(meta).encode()
            corpora["grid_fake"][1].setdefault(split, []).extend(samples)
    index = {"finetune": {}, "eval": {}, "pretrain": {}}
    for name, (role, splits) in corpora.items():
        for split, samples in sorted(splits.items()):
            entry = write_shard(root / "data" / "shards" / name / f"{split}-000000.tar", samples)
            metas = [json.loads(s["json"]) for s in samples]
            entry.update(corpus=name, labels=dict(pd.Series([m["label"] for m in metas]).value_counts()),
                         methods={k: int(v) for k, v in pd.Series([m["method"] for m in metas]).dropna()
                                  .value_counts().items()})
            entry["labels"] = {k: int(v) for k, v in entry["labels"].items()}
            index[role].setdefault(split, []).append(entry)
    index["pretrain"]["train"] = [{**e, "path": str(src / e["path"])} for e in collect["train"]]
    (root / "collect").mkdir()
    for role, splits in index.items():
        (root / "collect" / f"{role}.json").write_text(json.dumps(splits))
    (root / "collect" / "summary.json").write_text(json.dumps(
        {"roles": {"pretrain": {"gridt": {}}, "finetune": {"grid_real": {}, "grid_fake": {}},
                   "eval": {"crema_real": {}, "crema_fake": {}}}}))
    copy_tables(src, "gridt", root, "grid_real", "real", None, lambda v: speaker_split[v.split("-")[0]])
    copy_tables(src, "cremadt", root, "crema_real", "real", None, lambda v: "test")
    copy_tables(src, "cremadt", root, "crema_fake", "fake", "Seam", lambda v: "test")
    return root


def write_params(root: Path, name: str, **finetune) -> Path:
    params = {"model": {"video": VIDEO, "audio": {"model": str(root / "w2v"), "local_files_only": True,
                                                  "mask_time_prob": 0.0},
                        "head": {"tokens": 1, "dim": 64}},
              "pretrain": {"seed": 0, "lr": {"video": 0.001, "audio": 0.001, "heads": 0.001}, "warmup_steps": 1,
                           "min_lr": 0.0001, "weight_decay": 0.0, "patience": 1000, "epochs": 3, "eval_every": 100,
                           "data": {"window": 50, "batch_size": 6, "num_workers": 0, "min_frames": 50}},
              "finetune": {"init": "scratch", "encoder": str(root / "pretrain" / "encoder.pt"), "epochs": 4,
                           "patience": 4, "batch_size": 8, "clips_per_sample": 2, "num_workers": 0,
                           "shuffle_buffer": 64, "eval_batch_size": 8, "log_every": 100,
                           "head": {"hidden": 32, "dropout": 0.1}, **finetune},
              "evaluate": {"batch_size": 8, "datasets": {"CREMA-D": ["crema_real", "crema_fake"]}},
              "protocol": {"table1": {"name": "GRID + mouth artifacts"},
                           "table2": {"methods": ["Seam", "Jitter"]}}}
    path = root / f"{name}.yaml"
    with open(path, "w") as f:
        YAML().dump(params, f)
    return path


def run_pair(root: Path, name: str, methods_only=(), **finetune) -> tuple[dict, pd.DataFrame, dict]:
    params = write_params(root, name, **finetune)
    out = root / "runs" / name
    summary = ft.run(str(params), str(root / "collect" / "finetune.json"), str(root / "collect" / "pretrain.json"),
                     str(out), str(out / "live"))
    groups = ("finetune_test",) if methods_only else tuple(ev.GROUPS)
    df, metrics = ev.evaluate(str(out / "detector.pt"), root / "collect", root / "data_manifests",
                              root / "data" / "crop", 8, {"CREMA-D": ["crema_real", "crema_fake"]},
                              tuple(methods_only), groups)
    ev.write_outputs(df, metrics, out / "scores.parquet", out / "metrics.json", out / "plots", groups)
    return summary, df, metrics


@pytest.mark.slow  # end-to-end fine-tuning (4 runs) and pretraining
def test_finetune_evaluate_report_from_scratch_and_pretrained(proj, clips, capsys):
    torch.set_num_threads(2)
    scratch, df, m = run_pair(proj, "scratch", init="scratch")
    # the run: the paper's balance drew pretraining reals (3 train reals, 6 train fakes), val AUC selected
    assert scratch["trained"] and scratch["balance"]["finetune_fake"] == 2 * scratch["balance"]["finetune_real"]
    assert scratch["balance"]["per_epoch_real"] == scratch["balance"]["per_epoch_fake"]
    assert 0 <= scratch["best_epoch"] < 4 and scratch["val_auc"] is not None
    live = proj / "runs" / "scratch" / "live" / "plots" / "metrics"
    for curve in ("train/loss.tsv", "train/lr_head.tsv", "val/auc.tsv"):
        assert len((live / curve).read_text().strip().splitlines()) == 1 + len(scratch["history"])
    det, meta = load_detector(proj / "runs" / "scratch" / "detector.pt")
    assert meta["params_hash"] and len(meta["finetune_index_sha256"]) == 64 and meta["init"] == "scratch"

    # held-back test speakers scored: 2 reals + 4 fakes, 3 clips (75 frames) each
    t = df[df["group"] == "finetune_test"]
    assert sorted(t["video_id"].str.split("-").str[0].unique()) == [clip.stem for clip in clips.grid[4:]]
    assert (t["status"] == "scored").all() and len(t) == 6 and (t["n_clips"] == 3).all()
    g = m["groups"]["finetune_test"]
    assert g["overall"]["n_real"] == 2 and g["overall"]["n_fake"] == 4 and g["overall"]["auc"] is not None
    assert set(g["by_method"]) == {"Seam", "Jitter"}
    # the faceless eval video: a row with the track stage's reason, counted as not scored
    e = df[df["group"] == "eval"]
    noface = e[e["video_id"].str.startswith(Path(NO_FACE).stem)]
    assert len(noface) == 2 and (noface["status"] == "unscored").all()
    assert noface["reason"].str.contains("no face found").all()
    assert m["groups"]["eval"]["videos"]["scored"] == m["groups"]["eval"]["videos"]["total"] - 2
    assert m["cross_dataset"]["CREMA-D"]["auc"] is not None
    rocs = sorted(p.name for p in (proj / "runs" / "scratch" / "plots").glob("*.json"))
    assert rocs == ["dataset_CREMA-D.json", "eval.json", "finetune_test.json"]
    assert set(pd.read_parquet(proj / "runs" / "scratch" / "scores.parquet").columns) >= \
        {"corpus", "video_id", "label", "method", "n_clips", "score"}

    # a tiny pretrained encoder (audio-visual pretraining on the GRID pretraining shards), then fine-tuned
    save_tiny_wav2vec2(str(proj / "w2v"), hidden=64, dropout=0.0)
    params = write_params(proj, "pretrain")
    p = subprocess.run([sys.executable, "-m", "train.pretrain", "--params", str(params), "--index",
                        str(proj / "collect" / "pretrain.json"), "--out", str(proj / "pretrain"), "--live", "",
                        "--threads", "2"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    pre, _, m_pre = run_pair(proj, "pretrained", init="pretrained")
    assert pre["init"] == "pretrained"

    # Table 2: without the Jitter fakes, tested on them (and the reals)
    lomo, df_lomo, m_lomo = run_pair(proj, "lomo_jitter", methods_only=("Jitter",), init="scratch",
                                     exclude_methods=["Jitter"], epochs=1)
    assert lomo["balance"]["finetune_fake"] == 3 and lomo["exclude_methods"] == ["Jitter"]
    assert set(df_lomo["method"].dropna()) == {"Jitter"} and (df_lomo["label"] == "real").sum() == 2

    protocol = report.ProtocolParams(report.Table1Params("GRID + mouth artifacts"),
                                     report.Table2Params(("Seam", "Jitter")))
    text = report.render(m_pre, {"Jitter": m_lomo}, protocol, baselines={"scratch": m})
    assert "## Table 1: fine-tuned and tested on GRID + mouth artifacts" in text
    assert "| Seam | Jitter | Avg |" in text and "Seam: no result yet" in text and "| CREMA-D | Avg |" in text
    assert "6 of 6 |" in text and "| scratch | scratch |" in text and "zero-shot AV mismatch" in text
    with capsys.disabled():
        def line(name, mm):
            o, c = mm["groups"]["finetune_test"]["overall"], mm.get("cross_dataset", {}).get("CREMA-D", {})
            return (f"  {name:10s} test AUC {o['auc']:.3f} acc@0.5 {o['acc_at_0.5']:.3f} "
                    f"acc@val {o['acc_at_val_threshold']} | CREMA-D AUC {c.get('auc')}")
        c = m["cross_dataset"]["CREMA-D"]
        print(f"\nvideo-level results (GRID test speakers: 2 real, 4 fake; CREMA-D: {c['n_real']} real, "
              f"{c['n_fake']} fake)")
        print(line("scratch", m) + f" (val AUC {scratch['val_auc']:.3f}, epoch {scratch['best_epoch']})")
        print(line("pretrained", m_pre) + f" (val AUC {pre['val_auc']:.3f}, epoch {pre['best_epoch']})")
        print(line("lomo-Jitter", m_lomo))
        print(text)


def test_nothing_to_finetune_writes_valid_empty_outputs(tmp_path, capsys):
    (tmp_path / "collect").mkdir()
    for role in ("finetune", "pretrain", "eval"):
        (tmp_path / "collect" / f"{role}.json").write_text(json.dumps({"train": [], "val": [], "test": []}))
    (tmp_path / "collect" / "summary.json").write_text(json.dumps({"roles": {}}))
    params = write_params(tmp_path, "p")
    ft.main(["--params", str(params), "--index", str(tmp_path / "collect" / "finetune.json"),
             "--pretrain-index", str(tmp_path / "collect" / "pretrain.json"), "--out", str(tmp_path / "ft"),
             "--live", str(tmp_path / "live")])
    assert "nothing to do: no corpus with role finetune" in capsys.readouterr().out
    with pytest.raises(ValueError, match="was not trained: no corpus with role finetune"):
        load_detector(tmp_path / "ft" / "detector.pt")
    ev.main(["--params", str(params), "--detector", str(tmp_path / "ft" / "detector.pt"), "--collect",
             str(tmp_path / "collect"), "--manifests", str(tmp_path), "--crop-status", str(tmp_path),
             "--scores", str(tmp_path / "scores.parquet"), "--metrics", str(tmp_path / "m" / "evaluate.json"),
             "--plots", str(tmp_path / "plots")])
    assert pd.read_parquet(tmp_path / "scores.parquet").empty
    assert json.loads((tmp_path / "plots" / "finetune_test.json").read_text()) == []
    assert (tmp_path / "live" / "metrics.json").is_file() and (tmp_path / "live" / "plots" / "metrics").is_dir()
    report.main(["--params", str(params), "--evaluate", str(tmp_path / "m" / "evaluate.json"),
                 "--lomo", str(tmp_path / "m" / "lomo"), "--out", str(tmp_path / "results.md")])
    text = (tmp_path / "results.md").read_text()
    assert text.count("Nothing trained: no corpus with role finetune") == 2 and "Seam: no result yet" in text


def test_ranks_score_disjoint_shares_that_cover_every_segment_once(proj):
    """The torchrun split: rank r of w scores every w-th sample (no padding), so merging the ranks' parts
    counts each segment once and gives the single-process video scores."""
    from models.detector import Detector, DetectorConfig
    from models.video import VideoEncoderConfig
    from train.videoscores import pool_videos, segment_logits

    torch.manual_seed(0)
    det = Detector(VideoEncoderConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in VIDEO.items()}),
                   DetectorConfig(hidden=8)).eval()
    paths = [e["path"] for e in json.loads((proj / "collect" / "finetune.json").read_text())["train"]]
    whole = segment_logits(det, paths, "cpu", 8)
    parts = [segment_logits(det, paths, "cpu", 8, rank=r, world=2) for r in range(2)]
    keys = [k for p in parts for k in p]
    assert len(keys) == len(set(keys)) == len(whole) == 9  # 3 real + 6 fake segments (3 train speakers), odd
    merged = {k: v for p in parts for k, v in p.items()}
    a, b = pool_videos(whole), pool_videos(merged)
    assert [(v.video_id, v.n_clips) for v in a] == [(v.video_id, v.n_clips) for v in b]
    np.testing.assert_allclose([v.score for v in a], [v.score for v in b], rtol=1e-5)
