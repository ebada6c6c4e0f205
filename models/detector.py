"""The deepfake detector (paper Sec. 3.3): the pretrained video encoder, adaptive average pooling over time of
the last backend layer's output, and a new MLP head giving one logit (> 0: fake).

The 3D conv stem and the ResNet trunk can be frozen: their weights stop receiving gradients and their
batch-norm layers stay in eval mode even under `model.train()`, so their running statistics never move.
The detector also records the input contract its weights expect (clip length, crop, normalisation), so a
saved detector scores videos without the training params.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.video import VideoEncoder, VideoEncoderConfig


@dataclass(frozen=True)
class DetectorConfig:
    hidden: int | None = None     # MLP hidden width; None: the encoder's output width
    dropout: float = 0.5          # before each linear layer of the head
    clip: int = 25                # frames per scored clip (1 s at 25 fps, paper Sec. 3.3)
    crop: int = 88                # centre crop of the 96x96 mouth crops (the augmentation's crop size)
    mean: float = 0.421           # grayscale normalisation the encoder was trained with
    std: float = 0.165


class Detector(nn.Module):
    def __init__(self, video: VideoEncoderConfig, cfg: DetectorConfig = DetectorConfig()):
        super().__init__()
        self.encoder = VideoEncoder(video)
        self.video_cfg = self.encoder.cfg          # resolved
        self.cfg = cfg
        d = self.encoder.out_dim
        hidden = cfg.hidden or d
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(d, hidden), nn.GELU(),
                                  nn.Dropout(cfg.dropout), nn.Linear(hidden, 1))
        self._frozen: list[nn.Module] = []  # modules kept fixed by freeze_frontend

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video: (B, T, H, W) normalised grayscale -> (B,) logits."""
        features = self.encoder(video.unsqueeze(1))        # (B, T, D): the last backend layer's output
        pooled = features.mean(dim=1)                      # adaptive average pooling over time to 1 step
        return self.head(pooled).squeeze(-1)

    # --- freezing -------------------------------------------------------------------------------------
    def frontend(self) -> list[nn.Module]:
        """The 3D conv stem and the ResNet trunk: the local lip features kept from pretraining."""
        return [self.encoder.stem, self.encoder.trunk]

    def freeze_frontend(self, trunk: bool = True) -> None:
        """Freeze the stem, and the trunk too unless `trunk` is False (then it fine-tunes with the backend)."""
        self._frozen = self.frontend() if trunk else [self.encoder.stem]
        for module in self._frozen:
            for p in module.parameters():
                p.requires_grad_(False)
        self.train(self.training)  # put the frozen BNs in eval mode now

    @property
    def frontend_frozen(self) -> bool:
        return len(self._frozen) == len(self.frontend())

    def train(self, mode: bool = True) -> Detector:
        super().train(mode)
        for module in self._frozen:
            module.eval()  # BN uses (and never updates) its running statistics
        return self

    # --- per-layer learning rates ---------------------------------------------------------------------
    def backend_layers(self) -> list[list[nn.Parameter]]:
        """The backend's parameters as one list per layer, first layer first.

        Transformer: the input projection and the positional embeddings sit with the FIRST layer (they only
        feed it, and they come from pretraining like it); the final LayerNorm sits with the LAST layer (it
        normalises its output). MS-TCN: one entry per TCN block (it has no projection or positional
        embeddings). Every backend parameter is in exactly one entry.
        """
        backend = self.encoder.backend
        if self.video_cfg.backend == "transformer":
            layers = [list(layer.parameters()) for layer in backend.layers.layers]
            layers[0] = [*backend.proj.parameters(), backend.pos, *layers[0]]
            if backend.layers.norm is not None:
                layers[-1] = [*layers[-1], *backend.layers.norm.parameters()]
            return layers
        return [list(block.parameters()) for block in backend.blocks]

    def load_encoder_state(self, state: dict) -> None:
        """Pretrained video encoder weights (artifacts/pretrain/encoder.pt's `video_encoder`); strict, so a
        config mismatch is an error naming the keys rather than silently random weights."""
        self.encoder.load_state_dict(state, strict=True)
