"""Lip-motion video encoder: 3D conv stem -> per-frame 2D ResNet -> temporal backend (transformer or MS-TCN).

Input (B, 1, T, H, W) grayscale clips, output (B, T, out_dim) features; the time length is preserved so
fine-tuning can pool or classify per clip. The pretraining projection head lives in models/heads.py.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from models.resnet import ResNetTrunk
from models.tcn import MSTCN

# Table 4 defaults for a trunk; the paper doubles the backend width for ResNet-50 (its output is 2048-d).
_BACKEND_DEFAULTS = {"resnet18": {"width": 1024, "ffn": 2048, "tcn_branch": 256},
                     "resnet50": {"width": 2048, "ffn": 4096, "tcn_branch": 512}}


@dataclass(frozen=True)
class VideoEncoderConfig:
    trunk: str = "resnet18"            # resnet18 | resnet50
    backend: str = "transformer"       # transformer | mstcn
    # Defaults: params.yaml's small demo encoder; the paper's R18 + L6 is params/paper.yaml.
    layers: int = 2                    # backend depth (paper: 6 transformer layers)
    width: int | None = 128            # transformer width; None: 1024 (R18) / 2048 (R50)
    heads: int = 4
    ffn: int | None = 256              # transformer FFN width; None: 2048 (R18) / 4096 (R50)
    dropout: float = 0.1
    max_frames: int = 50               # positional embeddings available (2 s at 25 fps)
    tcn_branch: int | None = None      # MS-TCN channels per kernel branch; None: 256 (R18) / 512 (R50)
    tcn_kernels: tuple[int, ...] = (3, 5, 7)
    stem_channels: int = 16            # paper: 64
    trunk_widths: tuple[int, ...] = (16, 32, 64, 128)  # paper: (64, 128, 256, 512)

    def resolved(self) -> VideoEncoderConfig:
        if self.trunk not in _BACKEND_DEFAULTS:
            raise ValueError(f"unknown trunk {self.trunk!r}; expected one of {sorted(_BACKEND_DEFAULTS)}")
        if self.backend not in ("transformer", "mstcn"):
            raise ValueError(f"unknown backend {self.backend!r}; expected transformer or mstcn")
        d = _BACKEND_DEFAULTS[self.trunk]
        return replace(self, width=self.width or d["width"], ffn=self.ffn or d["ffn"],
                       tcn_branch=self.tcn_branch or d["tcn_branch"],
                       tcn_kernels=tuple(self.tcn_kernels), trunk_widths=tuple(self.trunk_widths))


class Stem3D(nn.Module):
    """Conv3d 5x7x7 (stride 1 in time, so T is kept) + BN + PReLU + spatial max-pool: H, W shrink 4x."""

    def __init__(self, out_ch: int = 64):
        super().__init__()
        self.conv = nn.Conv3d(1, out_ch, (5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3), bias=False)
        self.bn = nn.BatchNorm3d(out_ch)
        self.act = nn.PReLU(out_ch)
        self.pool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.act(self.bn(self.conv(x))))


class TransformerBackend(nn.Module):
    """Linear projection to the backend width + learnable positional embeddings + L encoder layers."""

    def __init__(self, in_dim: int, cfg: VideoEncoderConfig):
        super().__init__()
        self.proj = nn.Linear(in_dim, cfg.width)
        self.pos = nn.Parameter(torch.zeros(1, cfg.max_frames, cfg.width))
        nn.init.trunc_normal_(self.pos, std=0.02)
        # Pre-LN: stable at the paper's high initial learning rate (0.01).
        layer = nn.TransformerEncoderLayer(cfg.width, cfg.heads, cfg.ffn, cfg.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, cfg.layers, norm=nn.LayerNorm(cfg.width),
                                            enable_nested_tensor=False)
        self.out_dim = cfg.width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        if t > self.pos.shape[1]:
            raise ValueError(f"clip has {t} frames but the encoder has positional embeddings for "
                             f"{self.pos.shape[1]} (model.video.max_frames)")
        return self.layers(self.proj(x) + self.pos[:, :t])


class VideoEncoder(nn.Module):
    def __init__(self, cfg: VideoEncoderConfig):
        super().__init__()
        cfg = cfg.resolved()
        self.cfg = cfg
        self.stem = Stem3D(cfg.stem_channels)
        self.trunk = ResNetTrunk(cfg.trunk, cfg.stem_channels, cfg.trunk_widths)
        if cfg.backend == "transformer":
            self.backend = TransformerBackend(self.trunk.out_dim, cfg)
        else:
            self.backend = MSTCN(self.trunk.out_dim, cfg.tcn_branch, cfg.layers, cfg.tcn_kernels, cfg.dropout)
        self.out_dim = self.backend.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 1, T, H, W) normalised grayscale -> (B, T, out_dim)."""
        b, _, t = x.shape[:3]
        f = self.stem(x)                                      # (B, C, T, H/4, W/4)
        f = f.transpose(1, 2).flatten(0, 1)                   # one 2D image per frame
        f = self.trunk(f).view(b, t, -1)                      # (B, T, trunk_dim)
        return self.backend(f)
