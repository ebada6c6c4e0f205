"""Self-supervised audio-visual contrastive pretraining (the `pretrain` DVC stage).

    torchrun --standalone --nproc-per-node N -m train.pretrain --params params.yaml \
        --index data/collect/pretrain.json --out artifacts/pretrain --live dvclive/pretrain

A plain `python -m train.pretrain ...` is one process. Every epoch ends with a checkpoint in
OUT/state/last.pt; rerunning after a kill resumes from it (same params and shard index only) and ends
with the same weights as an uninterrupted run. OUT/encoder.pt holds the video encoder for fine-tuning.
"""
from __future__ import annotations

import argparse
import math
import resource
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.distributed as dist

from models.avclip import AVContrastiveModel
from models.loss import InfoNCELoss
from preprocess.fileio import sha256_file
from train.checkpoint import load_resumable, save_atomic
from train.pretrain_config import PretrainConfig, config_hash, load_configs, resolved_dict
from train.data import eval_windows, read_index, train_loader
from train.distributed import DistInfo, all_reduce_mean, broadcast_from_main, cleanup, init_from_env, wrap_ddp
from train.retrieval import a2v_topk, embed_windows

if TYPE_CHECKING:
    from dvclive import Live  # imported by run(): the training step needs no DVCLive (benchmarks/bench_gpu.py)


MODULES = ("video", "audio", "heads", "audio_scratch")  # audio_scratch: the audio encoder when not pretrained


def lr_factor(epoch: int, step: int, cfg: PretrainConfig, total_steps: int) -> float:
    """Multiplier of every module's peak rate at optimizer step `step` (counted over the whole run, which
    plans `total_steps`) in `epoch`: a linear warm-up over the first warmup_steps, then a cosine down to the
    floor at the last planned step, or (schedule epoch_decay) the paper's x lr_decay per epoch; floored at
    min_lr / lr.video either way."""
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0
    floor = min(1.0, cfg.min_lr / cfg.lr.video)
    if cfg.schedule == "epoch_decay":
        return warm * max(cfg.lr_decay ** epoch, floor)
    progress = min(1.0, max(0, step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
    return warm * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def lr_at(epoch: int, step: int, cfg: PretrainConfig, total_steps: int) -> dict[str, float]:
    """Each module's learning rate at that step."""
    f = lr_factor(epoch, step, cfg, total_steps)
    return {m: getattr(cfg.lr, m) * f for m in MODULES}


def module_of(name: str, audio_pretrained: bool = True) -> str:
    """Parameter name of AVContrastiveModel -> its learning-rate module."""
    top = name.split(".", 1)[0]
    if top == "audio":
        return "audio" if audio_pretrained else "audio_scratch"
    return top if top == "video" else "heads"


def set_lrs(opt: torch.optim.Optimizer, lrs: dict[str, float]) -> None:
    for g in opt.param_groups:
        g["lr"] = lrs[g["module"]]


def stopping_measure(record: dict, cfg: PretrainConfig) -> tuple[str, float]:
    """What early stopping watches in an epoch's record: the val gallery's InfoNCE loss (stop_on val_loss,
    when there is a gallery) or the training loss (the paper: stop when it has not descended for 3 epochs)."""
    if cfg.stop_on == "val_loss" and record.get("val_loss") is not None:
        return "val_loss", record["val_loss"]
    return "loss", record["loss"]


def update_stopping(state: dict, loss: float, cfg: PretrainConfig) -> bool:
    """One epoch's measure into the early-stopping state; True when it is the best so far."""
    better = loss < state["best_loss"]
    if better:
        state["best_loss"], state["bad_epochs"] = loss, 0
    else:
        state["bad_epochs"] += 1
    state["done"] = state["bad_epochs"] >= cfg.patience
    return better


def make_optimizer(model: torch.nn.Module, cfg: PretrainConfig) -> torch.optim.Optimizer:
    """AdamW with one group per (module, decay): the rates of video encoder, audio encoder and heads are
    separate params; no decay on biases, norms, PReLU slopes."""
    groups: dict[tuple[str, bool], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:  # the frozen wav2vec2 CNN stays out
            groups.setdefault((module_of(name, model.audio.pretrained), p.ndim >= 2), []).append(p)
    lrs = lr_at(0, 0, cfg, 1)
    return torch.optim.AdamW([{"params": ps, "module": m, "lr": lrs[m], "weight_decay": cfg.weight_decay if decay
                               else 0.0} for (m, decay), ps in sorted(groups.items())], lr=lrs["video"])


def spread(z: torch.Tensor) -> float:
    """Spread of L2-normalised embeddings over a batch: sqrt(1 - |mean|^2), 0 when they are one point,
    about 1 when they are scattered over the sphere."""
    z = torch.nn.functional.normalize(z.detach().float(), dim=-1)
    return float((1 - z.mean(0).pow(2).sum()).clamp_min(0).sqrt())


def guard_step(guard: dict, loss: float, spreads: float, global_batch: int, cfg: PretrainConfig) -> bool:
    """Counts stuck steps in a row (see PretrainConfig); True exactly when the run reaches collapse_steps."""
    chance = math.log(global_batch)
    stuck = abs(loss - chance) <= cfg.collapse_tolerance * chance or spreads < cfg.collapse_min_spread
    guard["run"] = guard["run"] + 1 if stuck else 0
    guard["longest"] = max(guard.get("longest", 0), guard["run"])
    return guard["run"] == cfg.collapse_steps


# Speed and memory of an epoch: printed in the log, kept out of the checkpoint, encoder.pt and DVCLive files,
# which DVC hashes (two identical runs must give the same dvc.lock).
TIMING_KEYS = ("clips_per_s", "seconds", "peak_mem_gb")


def peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def train_step(model, loss_fn, opt, batch: dict, cfg: PretrainConfig, device: torch.device):
    """One optimizer step on a batch: -> (loss tensor, video and audio embeddings). bf16 autocast on GPU."""
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16 and device.type == "cuda"):
        zv, za = model(batch["video"].to(device, non_blocking=True), batch["audio"].to(device, non_blocking=True))
    loss = loss_fn(zv, za)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    return loss, zv, za


def steps_per_epoch(ds, cfg: PretrainConfig) -> int:
    return ds.batches_per_rank if cfg.max_steps_per_epoch is None else min(ds.batches_per_rank,
                                                                           cfg.max_steps_per_epoch)


def train_one_epoch(model, loss_fn, opt, loader, ds, epoch, cfg: PretrainConfig, info: DistInfo,
                    state: dict) -> dict:
    """One epoch; state["step"] (optimizer steps so far) and state["guard"] (collapse guard) carry over."""
    model.train()
    ds.set_epoch(epoch)
    n_steps = steps_per_epoch(ds, cfg)
    total_steps = n_steps * cfg.epochs
    global_batch = cfg.data.batch_size * info.world
    guard = state["guard"]
    used = [m for m in MODULES if any(g["module"] == m for g in opt.param_groups)]
    audio_module = next((m for m in used if m.startswith("audio")), "audio")
    total, total_spread, steps, collapsed, t0 = 0.0, 0.0, 0, False, time.perf_counter()
    for batch in loader:
        if steps == n_steps:
            break
        lrs = lr_at(epoch, state["step"], cfg, total_steps)
        set_lrs(opt, lrs)
        loss, zv, za = train_step(model, loss_fn, opt, batch, cfg, info.device)
        value, s = float(loss.detach()), min(spread(zv), spread(za))
        total, total_spread, steps, state["step"] = total + value, total_spread + s, steps + 1, state["step"] + 1
        if guard_step(guard, value, s, global_batch, cfg):
            collapsed = True
            if info.is_main:
                print(f"WARNING: the embeddings look collapsed: {cfg.collapse_steps} steps in a row with the loss "
                      f"near ln({global_batch}) = {math.log(global_batch):.3f} or an embedding spread below "
                      f"{cfg.collapse_min_spread} (now loss {value:.4f}, spread {s:.3f}). Lower pretrain.lr or "
                      "lengthen pretrain.warmup_steps.", flush=True)
        if info.is_main and (steps == 1 or steps % cfg.log_every == 0):
            print(f"epoch {epoch} step {steps}/{n_steps} loss {value:.4f} spread {s:.3f} "
                  + " ".join(f"lr_{m} {lrs[m]:.2e}" for m in used), flush=True)
    seconds = time.perf_counter() - t0
    loss = all_reduce_mean(total / max(steps, 1), info)
    if not math.isfinite(loss):
        raise FloatingPointError(f"training loss is {loss} in epoch {epoch}; lower pretrain.lr or set grad_clip")
    clips = steps * cfg.data.batch_size * info.world
    return {"loss": loss, "lr": lrs["video"], "lr_audio": lrs[audio_module], "lr_heads": lrs["heads"],
            "spread": total_spread / max(steps, 1), "collapsed": float(collapsed or guard["run"] >= cfg.collapse_steps),
            "clips_per_s": clips / seconds, "seconds": seconds, "peak_mem_gb": peak_memory_gb(info.device)}


def evaluate(model: AVContrastiveModel, val_shards, cfg: PretrainConfig, info: DistInfo) -> dict:
    """Audio-to-video retrieval on the val split (rank 0 only; capped at val_max_samples windows), and the
    symmetric InfoNCE loss over the whole gallery at the training temperature (what early stopping watches:
    smoother than top-1 on a small gallery). Chance: top-1 1/N, loss ln N."""
    if not val_shards:
        return {}
    was_training = model.training
    model.eval()
    windows = eval_windows(val_shards, cfg.data, cfg.val_max_samples, tuple(cfg.val_window_starts))
    keys, zv, za = embed_windows(model, windows, cfg.data.batch_size, info.device,
                                 cfg.bf16 and info.device.type == "cuda")
    model.train(was_training)
    if len(keys) < 2:
        return {}
    # computed here, not with InfoNCELoss: under DDP that gathers from every rank, and only rank 0 is here
    zv_n, za_n = torch.nn.functional.normalize(zv.float(), dim=-1), torch.nn.functional.normalize(za.float(), dim=-1)
    logits, target = zv_n @ za_n.T / cfg.temperature, torch.arange(len(keys))
    val_loss = float(0.5 * (torch.nn.functional.cross_entropy(logits, target)
                            + torch.nn.functional.cross_entropy(logits.T, target)))
    return {**a2v_topk(za, zv), "val_loss": val_loss, "val_windows": len(keys), "chance_top1": 1 / len(keys)}


def log_epoch(live: Live | None, record: dict) -> None:
    if live is None:
        return
    for name in ("loss", "lr", "lr_audio", "lr_heads", "spread", "collapsed"):
        if name in record:
            live.log_metric(f"train/{name}", record[name])
    for name in ("a2v_top1", "a2v_top5", "chance_top1"):
        if name in record:
            live.log_metric(f"val/{name}", record[name])
    if "val_loss" in record:
        live.log_metric("val/loss", record["val_loss"])
    live.next_step()


def export_encoder(path: Path, model: AVContrastiveModel, state: dict) -> None:
    """encoder.pt: the video encoder for fine-tuning, and the whole pair (both encoders and heads, with the
    wav2vec2 config to rebuild it offline) for the zero-shot audio-visual mismatch score (train/avpair.py)."""
    save_atomic({"video_encoder": model.video.state_dict(), "video_head": model.video_head.state_dict(),
                 "pair": {"weights": model.state_dict(), "wav2vec2_config": model.audio.wav2vec2.config.to_dict()},
                 "best_epoch": state.get("best_epoch"),
                 "config": state["config"], "params_hash": state["params_hash"],
                 "shard_index_sha256": state["shard_index_sha256"], "epochs_trained": state["epoch"] + 1,
                 "initial_retrieval": state.get("initial", {}),
                 "audio_pretrained": model.audio.pretrained, "audio_encoder": model.audio.describe(),
                 "history": state["history"]}, path)


def run(params: str, index: str, out: str, live_dir: str | None) -> dict:
    info = init_from_env()
    model_cfg, cfg = load_configs(params)
    params_hash = config_hash(model_cfg, cfg)
    index_sha = sha256_file(Path(index))
    train_shards, val_shards = read_index(index, "train"), read_index(index, "val")
    out_dir = Path(out)
    state_path = out_dir / "state" / "last.pt"

    if info.world * cfg.data.batch_size < 2:
        raise ValueError("InfoNCE needs at least 2 clips per global batch (pretrain.data.batch_size x processes)")
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = AVContrastiveModel(model_cfg).to(info.device)
    opt = make_optimizer(model, cfg)
    state, why = load_resumable(state_path, {"params_hash": params_hash, "shard_index_sha256": index_sha})
    if info.is_main:
        print(f"{why} ({info.world} process(es), device {info.device}, params {params_hash})", flush=True)
        print(model.audio.describe(), flush=True)
    if state is None:
        state = {"epoch": -1, "step": 0, "guard": {"run": 0, "longest": 0}, "best_loss": math.inf, "bad_epochs": 0,
                 "done": False, "history": [],
                 "params_hash": params_hash, "shard_index_sha256": index_sha,
                 "config": resolved_dict(model_cfg, cfg)}
    else:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])

    ddp = wrap_ddp(model, info)
    group = dist.new_group() if info.world > 1 else None  # keeps the loss's collectives apart from DDP's
    loss_fn = InfoNCELoss(cfg.temperature, group)
    loader, ds = train_loader(train_shards, cfg.data, cfg.seed, info.rank, info.world,
                              pin_memory=info.device.type == "cuda")
    if info.is_main and ds.dropped:
        print(f"{ds.dropped} of {ds.total + ds.dropped} training clips are not used (without audio, or shorter than "
              f"max(window, pretrain.data.min_frames) = {max(cfg.data.window, cfg.data.min_frames)} frames)",
              flush=True)
    if info.is_main and ds.total < info.world * cfg.data.batch_size:
        print(f"warning: {ds.total} training clips for a global batch of {info.world * cfg.data.batch_size}: "
              "clips repeat inside a batch and act as false negatives", flush=True)

    live = None
    if info.is_main and "initial" not in state:  # retrieval before any training: the baseline of the curve
        state["initial"] = evaluate(model, val_shards, cfg, info)
        print(f"before training: {state['initial']}", flush=True)
    if info.is_main and live_dir:
        # Curves are rebuilt from the checkpoint's history, so a resumed run's plots are whole.
        from dvclive import Live
        live = Live(live_dir, save_dvc_exp=False, dvcyaml=None)
        live.log_params({"params_hash": params_hash, "shard_index_sha256": index_sha})
        log_epoch(live, state["initial"])
        for record in state["history"]:
            log_epoch(live, record)

    epoch = state["epoch"] + 1
    while not state["done"] and epoch < cfg.epochs:
        epoch_seed = cfg.seed * 1_000_003 + epoch * 1009 + info.rank
        torch.manual_seed(epoch_seed)  # dropout replays on resume
        np.random.seed(epoch_seed)  # transformers draws wav2vec2's time masks from numpy's global generator
        record = {"epoch": epoch, **train_one_epoch(ddp, loss_fn, opt, loader, ds, epoch, cfg, info, state)}
        timing = {k: record.pop(k) for k in TIMING_KEYS}  # printed, never stored: reruns must hash the same
        last = epoch + 1 >= cfg.epochs
        if info.is_main and ((epoch + 1) % cfg.eval_every == 0 or last or cfg.stop_on == "val_loss"):
            record.update(evaluate(model, val_shards, cfg, info))
        watched, value = stopping_measure(record, cfg)
        if update_stopping(state, broadcast_from_main(value, info), cfg) and watched == "val_loss":
            state["best_epoch"] = epoch  # the weights exported at the end
            state["best_model"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        state["done"] = state["done"] or last
        state["epoch"] = epoch
        if info.is_main:
            print(f"epoch {epoch} done: " + " ".join(f"{k} {v:.4g}" for k, v in {**record, **timing}.items()),
                  flush=True)
        state["history"].append(record)
        if info.is_main:
            save_atomic({**state, "model": model.state_dict(), "optimizer": opt.state_dict()}, state_path)
            log_epoch(live, record)
        epoch += 1
    if "best_model" in state:
        if info.is_main:
            print(f"best val loss {state['best_loss']:.4f} in epoch {state['best_epoch']}: its weights are exported",
                  flush=True)
        model.load_state_dict(state["best_model"])
    if info.is_main:
        export_encoder(out_dir / "encoder.pt", model, state)
        if live is not None:
            live.end()
        print(f"finished after epoch {state['epoch']}; encoder -> {out_dir / 'encoder.pt'}"
              + ("" if model.audio.pretrained else " (audio encoder NOT pretrained: random-init wav2vec2)"), flush=True)
    if info.world > 1:
        dist.barrier()
    cleanup()
    return state


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--index", default="data/collect/pretrain.json", help="collect-stage shard index")
    p.add_argument("--out", default="artifacts/pretrain")
    p.add_argument("--live", default="dvclive/pretrain", help="DVCLive directory ('' to disable)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads per process (0: torch default)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        run(a.params, a.index, a.out, a.live or None)
    except (FileNotFoundError, ValueError) as exc:  # missing weights or index, bad params: words, no traceback
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
