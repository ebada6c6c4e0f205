"""Fine-tuning the video encoder for deepfake detection (the `finetune` DVC stage; paper Sec. 3.3).

    python -m train.finetune --params params.yaml --index data/collect/finetune.json \
        --pretrain-index data/collect/pretrain.json --out artifacts/finetune --live dvclive/finetune

Torchrun works as for pretraining (`python -m train.launch train.finetune ...`). The encoder comes from
artifacts/pretrain/encoder.pt (`finetune.init: pretrained`) or from random weights (`init: scratch`); the 3D
stem is frozen, and the ResNet trunk too with `finetune.freeze: stem_trunk` (the paper), frozen modules' batch
norms in eval mode. Per-layer learning rates: head, last backend layer, x`layer_decay` per earlier layer (the
trunk, when it trains, one step below the first). BCE on 1 s clips with the pretraining augmentations. After
every epoch the val videos are scored (mean clip logit per video) and the epoch with the best val AUC is kept;
training stops after `patience` epochs without a better one. OUT/detector.pt: weights, resolved config, params
hash, sha256 of the shard lists and of the encoder, the val-chosen threshold and the history.

Every epoch ends with a checkpoint in OUT/state/last.pt (weights, optimizer, epoch, history, the selection
state, RNG states). Rerunning after a kill resumes from it when the inputs are the same (params hash, both
shard indexes, the encoder, the process count; else it starts fresh and says why) and writes the
detector.pt an uninterrupted run writes, byte for byte. Once detector.pt is written the state is removed.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from models.detector import Detector, DetectorConfig
from preprocess.fileio import sha256_file
from train.checkpoint import discard, load_resumable, rng_state, save_atomic, set_rng_state
from train.clips import ClipLoaderConfig, LabelledClips, plan_balance, clip_loader
from train.distributed import DistInfo, all_reduce_mean, cleanup, init_from_env, wrap_ddp
from train.finetune_config import FinetuneConfig, FinetuneSetup, load_setup
from train.metrics import auc, choose_threshold, labels01
from train.scoring import save_detector, save_untrained
from train.videoscores import score_videos

if TYPE_CHECKING:
    from dvclive import Live  # imported where a run logs: the training step needs no DVCLive (benchmarks/bench_gpu.py)


def build_detector(setup: FinetuneSetup) -> Detector:
    """The detector: the pretrained (or random) encoder, a new head, the frontend frozen as `finetune.freeze` says."""
    ft = setup.finetune
    a = setup.augment
    det = Detector(setup.video, DetectorConfig(hidden=ft.head.hidden, dropout=ft.head.dropout, clip=ft.clip,
                                               crop=a.crop, mean=a.mean, std=a.std))
    if ft.init == "pretrained":
        path = Path(ft.encoder)
        if not path.is_file():
            raise FileNotFoundError(f"no pretrained encoder at {path}: run `dvc repro pretrain`, "
                                    "or set finetune.init: scratch")
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        trained_with = ckpt.get("config", {}).get("model", {}).get("video")
        mine = json.loads(json.dumps(det.video_cfg.__dict__))
        if trained_with is not None and trained_with != mine:
            diff = sorted(k for k in mine if mine[k] != trained_with.get(k))
            raise ValueError(f"{path} was pretrained with another model.video ({', '.join(diff)} differ); "
                             "fine-tune with the same model.video params, or init: scratch")
        det.load_encoder_state(ckpt["video_encoder"])
    elif ft.init != "scratch":
        raise ValueError(f"finetune.init must be pretrained or scratch, got {ft.init!r}")
    det.freeze_frontend(trunk=ft.freeze == "stem_trunk")
    return det


def param_groups(det: Detector, ft: FinetuneConfig) -> list[dict]:
    """One optimizer group per (part, decay kind): the head at lr_head, backend layer i of L at
    lr_last_layer x layer_decay^(L-1-i). Where the transformer's projection, positional embeddings and
    final norm sit: Detector.backend_layers. No weight decay on 1-d parameters (biases, norms, PReLU) and the
    positional embeddings. Frozen parameters are in no group."""
    layers = det.backend_layers()
    parts = [("head", list(det.head.parameters()), ft.lr_head)]
    for i, params in enumerate(layers):
        lr = ft.lr_last_layer * ft.layer_decay ** (len(layers) - 1 - i)
        parts.append((f"backend.{i}", params, lr))
    if not det.frontend_frozen:  # freeze: stem: the trunk comes below the first backend layer
        parts.append(("trunk", list(det.encoder.trunk.parameters()), ft.lr_last_layer * ft.layer_decay ** len(layers)))
    pos = getattr(det.encoder.backend, "pos", None)
    groups = []
    for name, params, lr in parts:
        params = [p for p in params if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2 and p is not pos]
        no_decay = [p for p in params if not (p.ndim >= 2 and p is not pos)]
        for suffix, ps, wd in (("", decay, ft.weight_decay), ("/no_decay", no_decay, 0.0)):
            if ps:
                groups.append({"name": name + suffix, "params": ps, "lr": lr, "initial_lr": lr, "weight_decay": wd})
    return groups


def set_epoch_lr(opt: torch.optim.Optimizer, epoch: int, ft: FinetuneConfig) -> None:
    for g in opt.param_groups:
        g["lr"] = g["initial_lr"] * ft.lr_decay ** epoch


def train_step(model, opt, batch: dict, ft: FinetuneConfig, device: torch.device) -> torch.Tensor:
    """One optimizer step on a batch of labelled clips: -> the BCE loss. bf16 autocast on GPU."""
    video = batch["video"].to(device, non_blocking=True)
    label = batch["label"].to(device, non_blocking=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=ft.bf16 and device.type == "cuda"):
        logits = model(video)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), label)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if ft.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], ft.grad_clip)
    opt.step()
    return loss


def train_epoch(model, det: Detector, opt, loader, ds: LabelledClips, epoch: int, ft: FinetuneConfig,
                info: DistInfo) -> dict:
    det.train()
    ds.set_epoch(epoch)
    set_epoch_lr(opt, epoch, ft)
    n_steps = ds.batches_per_rank if ft.max_steps_per_epoch is None else min(ds.batches_per_rank,
                                                                             ft.max_steps_per_epoch)
    total, steps, t0 = 0.0, 0, time.perf_counter()
    for batch in loader:
        if steps == n_steps:
            break
        loss = train_step(model, opt, batch, ft, info.device)
        total += float(loss.detach())
        steps += 1
        if info.is_main and (steps == 1 or steps % ft.log_every == 0 or steps == n_steps):
            print(f"epoch {epoch} step {steps}/{n_steps} loss {float(loss.detach()):.4f} "
                  f"({steps * ft.batch_size * info.world / (time.perf_counter() - t0):.1f} clips/s)", flush=True)
    loss = all_reduce_mean(total / max(steps, 1), info)
    if not math.isfinite(loss):
        raise FloatingPointError(f"fine-tuning loss is {loss} in epoch {epoch}; lower the learning rates")
    return {"loss": loss, "lr_head": opt.param_groups[0]["lr"],
            "lr_last_layer": ft.lr_last_layer * ft.lr_decay ** epoch, "seconds": time.perf_counter() - t0}


def validate(det: Detector, val_paths: list[str], ft: FinetuneConfig, info: DistInfo) -> dict:
    """Video-level val AUC (None when val lacks a class) and the scores it came from."""
    if not val_paths:
        return {"val_auc": None, "val_videos": 0}
    videos = [v for v in score_videos(det, val_paths, info.device, ft.eval_batch_size, rank=info.rank,
                                      world=info.world, progress="val" if info.is_main else None)
              if v.score is not None]
    y, s = labels01([v.label for v in videos]), np.array([v.score for v in videos])
    val_loss = float(torch.nn.functional.binary_cross_entropy_with_logits(torch.from_numpy(s), torch.from_numpy(y)
                                                                         .double())) if len(s) else None
    return {"val_auc": auc(y, s), "val_loss": val_loss, "val_videos": len(videos),
            "val_threshold": choose_threshold(y, s)}


def selection_key(record: dict) -> tuple[float, float] | None:
    """How epochs are compared for model selection: video-level val AUC, ties (a saturated AUC of 1.0 among
    them) broken by the lower val loss (BCE of the video scores), so an untrained head that happens to rank
    the few val videos right does not win over one that separates them. None: no val videos of both classes."""
    if record.get("val_auc") is None:
        return None
    return record["val_auc"], -record["val_loss"]


def select(state: dict, record: dict, det: Detector, ft: FinetuneConfig) -> bool:
    """One epoch's record into the selection state (state["best"]: key, val AUC, epoch, threshold and a CPU
    copy of the weights; state["bad"]: epochs in a row without a better one); True when that stops training."""
    best, epoch = state["best"], record["epoch"]
    key = selection_key(record)
    if key is None:  # no val videos of both classes: nothing to select on, the last epoch is kept
        best.update(val_auc=None, epoch=epoch, val_threshold=record.get("val_threshold"), weights=None)
        return False
    if epoch + 1 < ft.min_epochs or best["key"] is None or key > best["key"]:
        # before min_epochs every epoch replaces the kept one: the head is not trained yet
        best.update(key=key, val_auc=record["val_auc"], epoch=epoch, val_threshold=record["val_threshold"],
                    weights={k: v.detach().cpu().clone() for k, v in det.state_dict().items()})
        state["bad"] = 0
        return False
    state["bad"] += 1
    return state["bad"] >= ft.patience


def log_epoch(live: Live | None, record: dict) -> None:
    if live is None:
        return
    for name in ("loss", "lr_head", "lr_last_layer"):
        live.log_metric(f"train/{name}", record[name])
    if record.get("val_auc") is not None:
        live.log_metric("val/auc", record["val_auc"])
        live.log_metric("val/loss", record["val_loss"])
    live.next_step()


def index_entries(path: str | Path, split: str) -> list[dict]:
    if not Path(path).is_file():
        return []
    return [e for e in json.loads(Path(path).read_text()).get(split, []) if int(e.get("samples", 0)) > 0]


def run(params: str, index: str, pretrain_index: str | None, out: str, live_dir: str | None,
        **overrides) -> dict:
    info = init_from_env()
    setup = load_setup(params, **overrides)
    ft = setup.finetune
    out_path = Path(out) / "detector.pt"
    state_path = Path(out) / "state" / "last.pt"
    if info.is_main:  # a DVC output of the stage: there (empty) even when nothing is trained
        state_path.parent.mkdir(parents=True, exist_ok=True)
    train_entries = index_entries(index, "train")
    val_paths = [e["path"] for e in index_entries(index, "val")]
    excluded = tuple(ft.exclude_methods)
    hashes = {"finetune_index_sha256": sha256_file(index) if Path(index).is_file() else None,
              "pretrain_index_sha256": sha256_file(pretrain_index) if pretrain_index and Path(pretrain_index).is_file()
              else None,
              "encoder_sha256": sha256_file(ft.encoder) if ft.init == "pretrained" and Path(ft.encoder).is_file()
              else None}
    meta = {"params_hash": setup.hash(), "config": setup.resolved(), **hashes}
    # what a checkpoint must have been written for to be resumed: same params, shards, encoder, process count
    inputs = {"params_hash": meta["params_hash"], **hashes, "processes": info.world}
    plan = plan_balance(train_entries, index_entries(pretrain_index, "train") if pretrain_index else [],
                        ft.balance, excluded)
    if plan.counts["finetune_fake"] == 0 or plan.counts["finetune_real"] + plan.counts["per_epoch_real"] == 0:
        why = ("no corpus with role finetune has training samples (register one with `python -m pipeline "
               "corpus add NAME DIR --role finetune ...`, then `dvc repro`)" if not train_entries else
               f"the finetune training split has {plan.counts['finetune_real']} real and "
               f"{plan.counts['finetune_fake']} fake samples (excluded methods: {list(excluded)}); both classes "
               "are needed")
        if info.is_main:
            print(f"finetune: nothing to do: {why}", flush=True)
            save_untrained(out_path, why, meta)
            discard(state_path)
            _empty_live(live_dir)
        cleanup()
        return {"trained": False, "reason": why}

    torch.manual_seed(ft.seed)
    det = build_detector(setup).to(info.device)
    opt = torch.optim.AdamW(param_groups(det, ft))
    model = wrap_ddp(det, info)
    ds = LabelledClips(list(plan.sources), ClipLoaderConfig(ft.clip, ft.clips_per_sample, ft.batch_size,
                                                            ft.num_workers, ft.shuffle_buffer, setup.augment),
                       excluded, ft.seed, info.rank, info.world,
                       expected_samples=plan.counts["per_epoch_real"] + plan.counts["per_epoch_fake"])
    loader = clip_loader(ds, pin_memory=info.device.type == "cuda")
    state, why = load_resumable(state_path, inputs)
    if info.is_main:
        n_train = sum(p.numel() for g in opt.param_groups for p in g["params"])
        print(f"finetune: init {ft.init}, {info.world} process(es) on {info.device}, {n_train / 1e6:.2f}M trainable "
              f"parameters; {plan.note}; excluded methods {list(excluded)}; {ds.batches_per_rank} batches per "
              f"epoch and rank; {len(val_paths)} val shards", flush=True)
        print(f"finetune: {why}", flush=True)
    if state is None:
        state = {**inputs, "epoch": -1, "done": False, "history": [], "bad": 0,
                 "best": {"key": None, "val_auc": None, "epoch": -1, "weights": None, "val_threshold": None}}
    else:
        det.load_state_dict(state.pop("model"))
        opt.load_state_dict(state.pop("optimizer"))
        set_rng_state(state.pop("rng"))  # (each epoch reseeds from (seed, epoch, rank) anyway)
    live = None
    if info.is_main and live_dir:
        from dvclive import Live

        live = Live(live_dir, save_dvc_exp=False, dvcyaml=None)
        live.log_params({"params_hash": meta["params_hash"], "init": ft.init, "balance": ft.balance,
                         "exclude_methods": ",".join(excluded)})
        for record in state["history"]:  # a resumed run's curves are whole
            log_epoch(live, record)

    best, history = state["best"], state["history"]
    epoch = state["epoch"] + 1
    while not state["done"] and epoch < ft.epochs:
        torch.manual_seed(ft.seed * 1_000_003 + epoch * 1009 + info.rank)
        record = {"epoch": epoch, **train_epoch(model, det, opt, loader, ds, epoch, ft, info)}
        record.update(validate(det, val_paths, ft, info))
        seconds = record.pop("seconds")  # printed, never stored: detector.pt is hashed by DVC
        history.append(record)
        if info.is_main:
            print(f"epoch {epoch} done: " + " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                    for k, v in {**record, "seconds": seconds}.items()), flush=True)
        log_epoch(live, record)
        stop = select(state, record, det, ft)
        if stop and info.is_main:
            print(f"early stop: no better val AUC (or val loss at the same AUC) for {state['bad']} epochs (best "
                  f"{best['val_auc']:.4f} in epoch {best['epoch']})", flush=True)
        state["done"] = stop or epoch + 1 >= ft.epochs
        state["epoch"] = epoch
        if info.is_main:
            save_atomic({**state, "model": det.state_dict(), "optimizer": opt.state_dict(), "rng": rng_state()},
                        state_path)
        epoch += 1
    if best["weights"] is not None:
        det.load_state_dict(best["weights"])
    summary = {"trained": True, "best_epoch": best["epoch"], "val_auc": best["val_auc"],
               "val_threshold": best["val_threshold"], "history": history, "balance": plan.counts,
               "init": ft.init, "exclude_methods": list(excluded)}
    if info.is_main:
        save_detector(out_path, det, {**meta, **summary})
        discard(state_path)  # after detector.pt: a kill between the two resumes into the finished state
        if live is not None:
            live.summary["best_val_auc"] = best["val_auc"]
            live.end()
        print(f"finished: best epoch {best['epoch']} (val AUC {best['val_auc']}); detector -> {out_path}",
              flush=True)
    if info.world > 1:
        torch.distributed.barrier()
    cleanup()
    return summary


def _empty_live(live_dir: str | None) -> None:
    """A run with nothing to train still leaves the DVCLive outputs dvc.yaml names (metrics.json, an empty
    plots folder): DVC accepts them, and there is no curve to draw."""
    if live_dir:
        from dvclive import Live

        Live(live_dir, save_dvc_exp=False, dvcyaml=None).end()
        (Path(live_dir) / "plots" / "metrics").mkdir(parents=True, exist_ok=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--index", default="data/collect/finetune.json", help="collect-stage shard index (finetune)")
    p.add_argument("--pretrain-index", default="data/collect/pretrain.json",
                   help="collect-stage index of the pretraining corpora (real clips for balance: pretrain_reals)")
    p.add_argument("--out", default="artifacts/finetune")
    p.add_argument("--live", default="dvclive/finetune", help="DVCLive directory ('' to disable)")
    p.add_argument("--exclude-method", action="append", default=None,
                   help="leave this fake method out of training (repeatable; overrides finetune.exclude_methods)")
    p.add_argument("--init", choices=("pretrained", "scratch"), default=None,
                   help="override finetune.init (the scratch baseline stage)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads per process (0: torch default)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    overrides = {} if a.exclude_method is None else {"exclude_methods": tuple(a.exclude_method)}
    if a.init:
        overrides["init"] = a.init
    try:
        run(a.params, a.index, a.pretrain_index, a.out, a.live or None, **overrides)
    except (FileNotFoundError, ValueError) as exc:  # missing encoder or index, bad params: words, no traceback
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
