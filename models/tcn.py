"""Multi-scale temporal convolutional backend (MS-TCN), the lipreading backend the paper compares against.

Layout follows Martinez et al. (ICASSP 2020), the backend of LipForensics: each block runs parallel
branches with kernel sizes (3, 5, 7), twice, with dilation 2**layer. Every block's residual path is a 1x1
conv: the reference implementation's `n_inputs // n_kernels != n_outputs` test makes it present in every
block, and the paper's 36.0M / 132.1M counts include it.
"""
from __future__ import annotations

import torch
from torch import nn


class _Branches(nn.Module):
    """Parallel dilated convs (same length out), each followed by BN + PReLU; outputs concatenated."""

    def __init__(self, in_ch: int, branch_ch: int, kernels: tuple[int, ...], dilation: int):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.Conv1d(in_ch, branch_ch, k, padding=(k - 1) // 2 * dilation, dilation=dilation),
                nn.BatchNorm1d(branch_ch),
                nn.PReLU(branch_ch),
            )
            for k in kernels
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches], dim=1)


class MSTCNBlock(nn.Module):
    def __init__(self, in_ch: int, branch_ch: int, kernels: tuple[int, ...], dilation: int, dropout: float):
        super().__init__()
        out_ch = branch_ch * len(kernels)
        self.conv0 = _Branches(in_ch, branch_ch, kernels, dilation)
        self.conv1 = _Branches(out_ch, branch_ch, kernels, dilation)
        self.drop = nn.Dropout(dropout)
        self.residual = nn.Conv1d(in_ch, out_ch, 1)
        self.act = nn.PReLU(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.drop(self.conv1(self.drop(self.conv0(x))))
        return self.act(y + self.residual(x))


class MSTCN(nn.Module):
    """(B, T, in_dim) -> (B, T, branch_ch * len(kernels)); the time length is preserved."""

    def __init__(self, in_dim: int, branch_ch: int, layers: int, kernels: tuple[int, ...] = (3, 5, 7),
                 dropout: float = 0.2):
        super().__init__()
        if any(k % 2 == 0 for k in kernels):
            raise ValueError(f"MS-TCN kernels must be odd to keep the time length, got {kernels}")
        self.out_dim = branch_ch * len(kernels)
        blocks, ch = [], in_dim
        for i in range(layers):
            blocks.append(MSTCNBlock(ch, branch_ch, kernels, dilation=2 ** i, dropout=dropout))
            ch = self.out_dim
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x.transpose(1, 2)).transpose(1, 2)
