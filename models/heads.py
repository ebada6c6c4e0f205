"""Projection head shared by both modalities: temporal adaptive average pooling to a fixed number of
tokens, flattened (the paper's reshape) into an MLP to the common contrastive space."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class PooledProjectionHead(nn.Module):
    def __init__(self, in_dim: int, tokens: int, out_dim: int = 256, hidden: int | None = None):
        super().__init__()
        hidden = hidden or in_dim
        self.tokens = tokens
        self.mlp = nn.Sequential(nn.Linear(tokens * in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, D) with any T >= 1 -> (B, out_dim); pooling makes video (50 frames) and audio
        (99 wav2vec2 frames) sequences comparable while keeping a coarse temporal order."""
        pooled = F.adaptive_avg_pool1d(x.transpose(1, 2), self.tokens)   # (B, D, tokens)
        return self.mlp(pooled.transpose(1, 2).flatten(1))
