"""Pretraining throughput (clips/s) and peak memory, tiny and full configurations.

    python benchmarks/bench_pretrain.py                   # CPU: tiny and full, 3 timed steps each
    python benchmarks/bench_pretrain.py --configs full --batch 32 --steps 10   # on a GPU machine

Each configuration runs in its own process (peak memory is per process) through the real training path:
the WebDataset shards the pipeline makes from the shared GRID clips (resample, track, align, crop and
collect, run once first in a scratch project, as the tests build it: about a minute or two on CPU), the
loader with augmentation, AdamW, InfoNCE, bf16 autocast on GPU. The loader repeats the 6 clips to fill
bigger batches; epochs restart as needed. "full" is the paper's R18 + 6-layer transformer video encoder
and the wav2vec2-base architecture (randomly initialised: same compute, no download).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # pipeline_project: the pipeline project the tests use


def pipeline_index() -> Path:
    """Runs the pipeline on the shared clips (in a scratch folder removed at exit); a shard index of its
    pretraining shards, train and val both for training."""
    import pipeline_project as h

    root = h.benchmark_project()
    shards = h.pretrain_shards(root, "train", "val")
    return h.write_index(root.parent / "bench_index.json", train=shards)


def batches(loader, ds):
    """Batches without end: a new epoch whenever one runs out (the pipeline's corpus is small)."""
    epoch = 0
    while True:
        ds.set_epoch(epoch)
        yield from loader
        epoch += 1


def measure(config: str, index: str, batch: int, steps: int, threads: int) -> dict:
    import torch
    from transformers import Wav2Vec2Config

    from models.audio import AudioEncoder, AudioEncoderConfig
    from models.avclip import AVContrastiveModel, AVModelConfig
    from models.loss import InfoNCELoss
    from models.presets import TINY_VIDEO, tiny_wav2vec2_config
    from models.video import VideoEncoderConfig
    from train.pretrain_config import PretrainConfig
    from train.data import LoaderConfig, read_index, train_loader
    from train.pretrain import make_optimizer, train_step

    torch.set_num_threads(threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    if config == "tiny":
        mcfg, w2v = AVModelConfig(video=TINY_VIDEO), tiny_wav2vec2_config(64)
    else:
        from pipeline.params import paper_params
        from preprocess.settings import section

        paper = section(paper_params(ROOT / "params.yaml"), "model.video", VideoEncoderConfig)  # R18 + L6
        mcfg, w2v = AVModelConfig(video=paper), Wav2Vec2Config()  # wav2vec2-base shape
    audio = AudioEncoder.from_config(AudioEncoderConfig(), w2v)
    model = AVContrastiveModel(mcfg, audio).to(device)
    # min_frames lowered to the 75-frame GRID clips (real pretraining keeps 100)
    cfg = PretrainConfig(data=LoaderConfig(batch_size=batch, num_workers=0, min_frames=50))
    opt, loss_fn = make_optimizer(model, cfg), InfoNCELoss(cfg.temperature)
    it = batches(*train_loader(read_index(index, "train"), cfg.data, 0, 0, 1))
    times = []
    for step in range(steps + 1):  # step 0 warms up (allocator, kernels) and is not timed
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        train_step(model, loss_fn, opt, next(it), cfg, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step:
            times.append(time.perf_counter() - t0)
    n_video = sum(p.numel() for p in model.video.parameters())
    n_all = sum(p.numel() for p in model.parameters())
    peak = (torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    return {"config": config, "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(),
            "threads": threads, "batch": batch, "window": cfg.data.window, "steps": steps,
            "video_params_M": round(n_video / 1e6, 2), "all_params_M": round(n_all / 1e6, 2),
            "s_per_step": round(sum(times) / len(times), 3), "clips_per_s": round(batch * len(times) / sum(times), 2),
            "peak_mem_GiB": round(peak, 2), "peak_mem_kind": "GPU allocated" if device.type == "cuda" else "RSS"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=["tiny", "full"], choices=["tiny", "full"])
    p.add_argument("--batch", type=int, default=None, help="clips per step (default: tiny 6, full 4)")
    p.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--index", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print(json.dumps(measure(a.one, a.index, a.batch, a.steps, a.threads)))
        return
    start = time.perf_counter()
    index = pipeline_index()
    print(f"pipeline shards built in {time.perf_counter() - start:.0f} s", flush=True)
    for config in a.configs:
        batch = a.batch or (6 if config == "tiny" else 4)
        out = subprocess.run([sys.executable, __file__, "--one", config, "--index", str(index), "--batch", str(batch),
                              "--steps", str(a.steps), "--threads", str(a.threads)], capture_output=True, text=True,
                             check=False, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if out.returncode:
            print(f"{config}: failed\n{out.stderr[-2000:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['config']:5s} {r['device']}, {r['threads']} threads: batch {r['batch']} x {r['window']} frames, "
              f"video encoder {r['video_params_M']}M / all {r['all_params_M']}M params: "
              f"{r['s_per_step']} s/step, {r['clips_per_s']} clips/s, peak {r['peak_mem_kind']} {r['peak_mem_GiB']} GiB")


if __name__ == "__main__":
    main()
