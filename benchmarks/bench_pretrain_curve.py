"""Does the default schedule learn? The pretraining loss curve of params.yaml's video encoder (the paper's
R18 + 6-layer transformer after `pipeline params apply params/paper.yaml`) on CPU, with a small batch, from
the params' learning rates and warm-up.

    python benchmarks/bench_pretrain_curve.py [--steps 300] [--batch 6] [--threads 2] [--out curve.json]

Data: the shards the pipeline makes from the shared GRID clips (6 speakers; built once in a scratch project,
as the tests build it), random 2 s windows with the default augmentation, through the real loader.
On a GPU (when one is visible) it runs there with bf16 autocast.
Model: params.yaml's video encoder (or the tiny one with --video tiny) and a randomly initialised wav2vec2
(model.audio.pretrained: false) of --audio-size. Optimizer, per-module rates, warm-up, clipping and the
collapse guard are the trainer's own functions; the per-epoch decay is left out (a few hundred steps are
one epoch of a real corpus). Prints the loss every --every steps (mean of the last --every) beside
ln(batch), then audio-to-video retrieval on the training clips' windows (frames 0-49 and 25-74) before
and after. Nothing is asserted.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

AUDIO_SIZES = {"tiny": {"hidden": 64, "layers": 2, "heads": 2, "ffn": 128, "conv_dim": 32},
               "small": {"hidden": 256, "layers": 4, "heads": 4, "ffn": 1024, "conv_dim": 256},
               "base": {}}  # base: the params' defaults (wav2vec2-base shape)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=6)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--every", type=int, default=10)
    p.add_argument("--video", choices=["params", "tiny"], default="params")
    p.add_argument("--audio-size", choices=sorted(AUDIO_SIZES), default="small")
    p.add_argument("--lr", nargs="+", type=float, help="override the peak rates: video audio heads [audio_scratch]")
    p.add_argument("--warmup", type=int, help="override pretrain.warmup_steps")
    p.add_argument("--out", help="write the curve as JSON here")
    a = p.parse_args()

    import torch

    from bench_pretrain import pipeline_index
    from models.avclip import AVContrastiveModel
    from models.loss import InfoNCELoss
    from models.presets import TINY_VIDEO
    from train.pretrain_config import LearningRates, load_configs
    from train.data import eval_windows, read_index, train_loader
    from train.pretrain import guard_step, lr_at, make_optimizer, set_lrs, spread, train_step
    from train.retrieval import a2v_topk, embed_windows

    torch.set_num_threads(a.threads)
    model_cfg, cfg = load_configs(ROOT / "params.yaml")
    audio = dataclasses.replace(model_cfg.audio, pretrained=False, **AUDIO_SIZES[a.audio_size])
    model_cfg = dataclasses.replace(model_cfg, audio=audio, video=TINY_VIDEO if a.video == "tiny" else model_cfg.video)
    data = dataclasses.replace(cfg.data, batch_size=a.batch, num_workers=0, min_frames=50)  # GRID: 75 frames
    cfg = dataclasses.replace(cfg, data=data, lr=LearningRates(*a.lr) if a.lr else cfg.lr,
                              warmup_steps=cfg.warmup_steps if a.warmup is None else a.warmup)
    shards = read_index(pipeline_index(), "train")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    use_bf16 = cfg.bf16 and device.type == "cuda"
    torch.manual_seed(cfg.seed)
    model = AVContrastiveModel(model_cfg).to(device)
    opt, loss_fn = make_optimizer(model, cfg), InfoNCELoss(cfg.temperature)
    loader, ds = train_loader(shards, cfg.data, cfg.seed, 0, 1)
    print(f"{model.audio.describe()}; video {model_cfg.video.resolved().trunk} + {model_cfg.video.layers} "
          f"{model_cfg.video.backend} layers; batch {a.batch} (ln {math.log(a.batch):.3f}); peak lr {cfg.lr}; "
          f"warm-up {cfg.warmup_steps}; {device}, {a.threads} threads", flush=True)

    def retrieval() -> dict:
        model.eval()
        wins = eval_windows(shards, cfg.data, starts=(0, 25))
        keys, zv, za = embed_windows(model, wins, a.batch, device, use_bf16)
        model.train()
        return {**a2v_topk(za, zv), "windows": len(keys), "chance_top1": 1 / len(keys)}

    before = retrieval()
    print(f"before: {before}", flush=True)
    guard = {"run": 0, "longest": 0}
    curve, window_losses, step, epoch, t0 = [], [], 0, 0, time.perf_counter()
    model.train()
    while step < a.steps:
        ds.set_epoch(epoch)
        for batch in loader:
            if step == a.steps:
                break
            lrs = lr_at(0, step, cfg, a.steps)
            set_lrs(opt, lrs)
            loss, zv, za = train_step(model, loss_fn, opt, batch, cfg, device)
            sv, sa = spread(zv), spread(za)
            value, s = float(loss.detach()), min(sv, sa)
            if guard_step(guard, value, s, a.batch, cfg):
                print(f"collapse guard fired at step {step + 1}", flush=True)
            window_losses.append(value)
            step += 1
            if step % a.every == 0 or step == 1:
                row = {"step": step, "loss": sum(window_losses) / len(window_losses), "spread_video": sv,
                       "spread_audio": sa,
                       "lr_video": lrs["video"], "s_per_step": (time.perf_counter() - t0) / step}
                curve.append(row)
                print(" ".join(f"{k} {v:.4g}" for k, v in row.items()), flush=True)
                window_losses = []
                if a.out:  # as it goes: a long CPU run can be read before it ends
                    Path(a.out).write_text(json.dumps({"args": vars(a), "curve": curve, "before": before,
                                                       "ln_batch": math.log(a.batch)}, indent=1))
        epoch += 1
    after = retrieval()
    print(f"after {step} steps: {after}; longest stuck run {guard['longest']}", flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps({"args": vars(a), "curve": curve, "before": before, "after": after,
                                           "ln_batch": math.log(a.batch)}, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
