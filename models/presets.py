"""Tiny configurations for tests, smoke runs and CPU benchmarks (not for real training)."""
from __future__ import annotations

from transformers import Wav2Vec2Config

from models.video import VideoEncoderConfig

TINY_VIDEO = VideoEncoderConfig(stem_channels=8, trunk_widths=(8, 16, 16, 32), width=64, heads=4, ffn=128,
                                layers=2, dropout=0.1, tcn_branch=16, max_frames=50)


def tiny_wav2vec2_config(hidden: int = 32, dropout: float = 0.1) -> Wav2Vec2Config:
    """A small wav2vec2 with the *default* conv kernels and strides (so 32000 samples -> 99 frames) and
    narrow layers, built without any download."""
    drop = {k: dropout for k in ("hidden_dropout", "attention_dropout", "activation_dropout", "feat_proj_dropout")}
    return Wav2Vec2Config(hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=2 * hidden, conv_dim=(hidden,) * 7, num_conv_pos_embeddings=16,
                          num_conv_pos_embedding_groups=4, vocab_size=32, **drop)


def save_tiny_wav2vec2(directory: str, seed: int = 0, hidden: int = 32, dropout: float = 0.1) -> str:
    """Write a randomly initialised tiny wav2vec2 in save_pretrained layout (the local-directory path
    that real runs use for offline weights)."""
    import torch
    from transformers import Wav2Vec2Model

    torch.manual_seed(seed)
    Wav2Vec2Model(tiny_wav2vec2_config(hidden, dropout)).save_pretrained(directory)
    return directory
