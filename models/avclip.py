"""The pretraining pair: video encoder + wav2vec2 audio encoder, each with its pooled projection head."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from models.audio import AudioEncoder, AudioEncoderConfig
from models.heads import PooledProjectionHead
from models.video import VideoEncoder, VideoEncoderConfig


@dataclass(frozen=True)
class HeadConfig:
    tokens: int = 4        # fixed-length token sequence after temporal adaptive pooling
    hidden: int | None = None  # MLP hidden width; None: the encoder's width
    dim: int = 256         # contrastive embedding size (paper)


@dataclass(frozen=True)
class AVModelConfig:
    video: VideoEncoderConfig = field(default_factory=VideoEncoderConfig)
    audio: AudioEncoderConfig = field(default_factory=AudioEncoderConfig)
    head: HeadConfig = field(default_factory=HeadConfig)


class AVContrastiveModel(nn.Module):
    def __init__(self, cfg: AVModelConfig, audio_encoder: AudioEncoder | None = None):
        super().__init__()
        self.cfg = cfg
        self.video = VideoEncoder(cfg.video)
        self.audio = audio_encoder if audio_encoder is not None else AudioEncoder(cfg.audio)
        h = cfg.head
        self.video_head = PooledProjectionHead(self.video.out_dim, h.tokens, h.dim, h.hidden)
        self.audio_head = PooledProjectionHead(self.audio.out_dim, h.tokens, h.dim, h.hidden)

    def embed_video(self, video: torch.Tensor) -> torch.Tensor:
        """video: (B, T, H, W) normalised grayscale -> (B, dim), not normalised."""
        return self.video_head(self.video(video.unsqueeze(1)))

    def embed_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """audio: (B, samples) 16 kHz -> (B, dim), not normalised."""
        return self.audio_head(self.audio(audio))

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.embed_video(video), self.embed_audio(audio)
