"""What does an audio-encoder learning rate do to a wav2vec2's outputs? (choosing pretrain.lr.audio)

    python benchmarks/bench_audio_lr.py [--rates 1e-6 1e-5 1e-4 1e-3 1e-2] [--steps 20] [--size small]

No pretrained weights can be downloaded here, so the reference is a randomly initialised wav2vec2 (the
params' architecture at --size; its linear weights are drawn with std 0.02, the scale of the pretrained
checkpoints' weights, which is what AdamW's step of about lr per weight is measured against). For each
rate it trains --steps steps of the real contrastive objective (tiny video encoder, the params' video and
head rates, warm-up off so the rate applies from the first step) on real speech (the GRID clips through the
pipeline and the loader) and reports, on fixed real-speech windows in eval mode, the relative change of the
transformer's output ||H - H0|| / ||H0|| and of its weights. A rate that moves the outputs by more than a
few percent within tens of steps would overwrite what pretraining put there before the heads have learnt
anything. Nothing is asserted.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rates", nargs="+", type=float, default=[1e-6, 1e-5, 1e-4, 1e-3, 1e-2])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=6)
    p.add_argument("--size", choices=["small", "base"], default="small")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()

    import torch

    from bench_pretrain import pipeline_index
    from bench_pretrain_curve import AUDIO_SIZES
    from models.avclip import AVContrastiveModel
    from models.loss import InfoNCELoss
    from models.presets import TINY_VIDEO
    from train.pretrain_config import load_configs
    from train.data import eval_windows, read_index, train_loader
    from train.pretrain import lr_at, make_optimizer, set_lrs, train_step

    torch.set_num_threads(a.threads)
    model_cfg, cfg = load_configs(ROOT / "params.yaml")
    audio_cfg = dataclasses.replace(model_cfg.audio, pretrained=False, **AUDIO_SIZES[a.size])
    model_cfg = dataclasses.replace(model_cfg, audio=audio_cfg, video=TINY_VIDEO)
    data = dataclasses.replace(cfg.data, batch_size=a.batch, num_workers=0, min_frames=50)  # GRID: 75 frames
    shards = read_index(pipeline_index(), "train")
    probe = torch.stack([w[2] for w in eval_windows(shards, data, starts=(0, 25))])  # 12 real-speech windows

    def outputs(model) -> torch.Tensor:
        model.eval()
        with torch.no_grad():
            return model.audio(probe)

    print(f"{audio_cfg.layers} layers x {audio_cfg.hidden} wav2vec2, random init (std 0.02); {a.steps} steps, "
          f"batch {a.batch}; video/heads at {cfg.lr.video:g}/{cfg.lr.heads:g}", flush=True)
    for rate in a.rates:
        rates = dataclasses.replace(cfg.lr, audio=rate, audio_scratch=rate)  # the model is random-init
        run = dataclasses.replace(cfg, data=data, warmup_steps=0, lr=rates)
        torch.manual_seed(0)
        model = AVContrastiveModel(model_cfg)
        w0 = [q.detach().clone() for q in model.audio.wav2vec2.encoder.parameters()]
        h0 = outputs(model)
        opt, loss_fn = make_optimizer(model, run), InfoNCELoss(run.temperature)
        loader, ds = train_loader(shards, run.data, run.seed, 0, 1)
        step, epoch = 0, 0
        model.train()
        while step < a.steps:
            ds.set_epoch(epoch)
            for b in loader:
                if step == a.steps:
                    break
                set_lrs(opt, lr_at(0, step, run, a.steps))
                loss, _, _ = train_step(model, loss_fn, opt, b, run, torch.device("cpu"))
                step += 1
            epoch += 1
        h = outputs(model)
        dw = sum(float((q - q0).norm() ** 2) for q, q0 in zip(model.audio.wav2vec2.encoder.parameters(), w0)) ** 0.5
        w = sum(float(q0.norm() ** 2) for q0 in w0) ** 0.5
        print(f"lr.audio {rate:.0e}: outputs change {float((h - h0).norm() / h0.norm()):.4f}, "
              f"transformer weights change {dw / w:.4f} (relative L2) after {a.steps} steps; last loss "
              f"{float(loss):.3f}", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
