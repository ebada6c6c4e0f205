"""Symmetric InfoNCE over L2-normalised audio and video embeddings (paper Eq. 1-3).

Negatives come from the whole global batch: under DDP every rank gathers all ranks' embeddings *with*
gradients and scores its local rows against the global columns. With DDP's gradient averaging this
gives exactly the gradients of one process on the concatenated batch.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import nn
from torch.nn import functional as F


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All ranks' rows concatenated in rank order, and the offset of this rank's rows."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, 0
    # The autograd-aware all_gather sends each rank's share of the gradient back to the owner.
    parts = dist_fn.all_gather(x)
    return torch.cat(parts, dim=0), dist.get_rank() * x.shape[0]


class InfoNCELoss(nn.Module):
    def __init__(self, temperature: float = 0.1):
        super().__init__()
        self.temperature = temperature

    def forward(self, z_video: torch.Tensor, z_audio: torch.Tensor) -> torch.Tensor:
        """z_*: (B_local, D) projections (same batch size on every rank). Returns the mean over local rows."""
        zv = F.normalize(z_video.float(), dim=-1)
        za = F.normalize(z_audio.float(), dim=-1)
        zv_all, offset = gather_with_grad(zv)
        za_all, _ = gather_with_grad(za)
        target = torch.arange(zv.shape[0], device=zv.device) + offset
        loss_va = F.cross_entropy(zv @ za_all.T / self.temperature, target)   # video queries, audio keys
        loss_av = F.cross_entropy(za @ zv_all.T / self.temperature, target)   # audio queries, video keys
        return 0.5 * (loss_va + loss_av)
