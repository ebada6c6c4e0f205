"""Symmetric InfoNCE over L2-normalised audio and video embeddings (paper Eq. 1-3).

Negatives come from the whole global batch: under DDP every rank gathers all ranks' embeddings *with*
gradients and scores its local rows against the global columns. With DDP's gradient averaging this
gives exactly the gradients of one process on the concatenated batch.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient for the gathered tensor and keeps this rank's
    slice: one all_reduce on any backend (torch.distributed.nn emulates reduce-scatter with one scatter
    per rank on gloo)."""

    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        ctx.rank = dist.get_rank(group)
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, x.contiguous(), group=group)
        ctx.n = x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n], None


def gather_with_grad(x: torch.Tensor, group=None) -> tuple[torch.Tensor, int]:
    """All ranks' rows concatenated in rank order, and the offset of this rank's rows."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size(group) == 1:
        return x, 0
    return _GatherWithGrad.apply(x, group), dist.get_rank(group) * x.shape[0]


class InfoNCELoss(nn.Module):
    def __init__(self, temperature: float = 0.1, group=None):
        super().__init__()
        self.temperature = temperature
        self.group = group  # a dedicated process group keeps these collectives apart from DDP's

    def forward(self, z_video: torch.Tensor, z_audio: torch.Tensor) -> torch.Tensor:
        """z_*: (B_local, D) projections (same batch size on every rank). Returns the mean over local rows."""
        zv = F.normalize(z_video.float(), dim=-1)
        za = F.normalize(z_audio.float(), dim=-1)
        zv_all, offset = gather_with_grad(zv, self.group)
        za_all, _ = gather_with_grad(za, self.group)
        target = torch.arange(zv.shape[0], device=zv.device) + offset
        loss_va = F.cross_entropy(zv @ za_all.T / self.temperature, target)   # video queries, audio keys
        loss_av = F.cross_entropy(za @ zv_all.T / self.temperature, target)   # audio queries, video keys
        return 0.5 * (loss_va + loss_av)
