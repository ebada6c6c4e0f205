"""Process-group setup from the torchrun environment, and the DDP wrapper the trainer uses."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env() -> DistInfo:
    """torchrun sets WORLD_SIZE / RANK / LOCAL_RANK; a plain `python -m` run is one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world, local_rank, device)


def wrap_ddp(model: nn.Module, info: DistInfo) -> nn.Module:
    if info.world == 1:
        return model
    # find_unused_parameters: wav2vec2 leaves parameters out of the graph in some steps (masked_spec_embed
    # without masking, layers skipped by layerdrop). Without it DDP silently skips averaging the bucket
    # that holds them on the first step, then fails on the next.
    ids = [info.local_rank] if info.device.type == "cuda" else None
    return DDP(model, device_ids=ids, find_unused_parameters=True)


def all_reduce_mean(x: float, info: DistInfo) -> float:
    if info.world == 1:
        return x
    t = torch.tensor([x], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return float(t) / info.world


def broadcast_from_main(x: float, info: DistInfo) -> float:
    """Rank 0's value on every rank (a decision made from what only rank 0 measured, e.g. val loss)."""
    if info.world == 1:
        return x
    # a sum in which only rank 0 counts: the all-reduce the training loss already goes through
    return all_reduce_mean(x if info.is_main else 0.0, info) * info.world


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
