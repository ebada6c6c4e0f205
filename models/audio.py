"""Audio encoder: a pretrained wav2vec2 (transformers) with its CNN feature encoder frozen.

Weights come from a local directory or a hub id (default: the ASR model the paper used). Offline, nothing
is downloaded: a missing model fails with a message naming what is missing and where to put it.
`pretrained: false` builds the same architecture at the size given by the params with random weights
(machines without the download; the encoder is then learnt from scratch, not the paper's setting).
"""
from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass

import torch
from torch import nn
from transformers import Wav2Vec2Config, Wav2Vec2Model


@dataclass(frozen=True)
class AudioEncoderConfig:
    model: str = "facebook/wav2vec2-base-960h"  # hub id or local directory (save_pretrained layout)
    local_files_only: bool | None = None         # None: follow HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE
    freeze_feature_encoder: bool = True           # the paper freezes the 1D CNN
    # Train-mode regularisation of wav2vec2, explicit so they are params rather than checkpoint defaults.
    mask_time_prob: float = 0.05
    mask_time_length: int = 10
    mask_feature_prob: float = 0.0
    layerdrop: float = 0.0                        # > 0 leaves layers unused per step (DDP must find them)
    # pretrained: false -> random weights of this size (params.yaml's demo size; wav2vec2-base: 768/12/12/3072/512,
    # params/paper.yaml); `model` unused
    pretrained: bool = False
    hidden: int = 128
    layers: int = 2
    heads: int = 4
    ffn: int = 256
    conv_dim: int = 64                            # channels of each of the 7 CNN feature-encoder layers

    def overrides(self) -> dict:
        return {"mask_time_prob": self.mask_time_prob, "mask_time_length": self.mask_time_length,
                "mask_feature_prob": self.mask_feature_prob, "layerdrop": self.layerdrop}


def _offline(cfg: AudioEncoderConfig) -> bool:
    if cfg.local_files_only is not None:
        return cfg.local_files_only
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def random_wav2vec2_config(cfg: AudioEncoderConfig) -> Wav2Vec2Config:
    """The wav2vec2 architecture at cfg's size (default conv kernels and strides: 32000 samples -> 99
    frames), with cfg's train-mode settings."""
    if cfg.hidden % cfg.heads:
        raise ValueError(f"model.audio.hidden {cfg.hidden} is not a multiple of model.audio.heads {cfg.heads}")
    groups = 16 if cfg.hidden % 16 == 0 else 1  # positional conv groups (16 in wav2vec2-base)
    return Wav2Vec2Config(hidden_size=cfg.hidden, num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads,
                          intermediate_size=cfg.ffn, conv_dim=(cfg.conv_dim,) * 7,
                          num_conv_pos_embedding_groups=groups, **cfg.overrides())


def load_wav2vec2(cfg: AudioEncoderConfig) -> Wav2Vec2Model:
    if not cfg.pretrained:
        return Wav2Vec2Model(random_wav2vec2_config(cfg))  # weights from torch's RNG: seed it first
    offline = _offline(cfg)
    local_dir = os.path.isdir(cfg.model)
    try:
        # wav2vec2-base-960h is a CTC checkpoint: loading the bare model drops the unused lm_head.
        return Wav2Vec2Model.from_pretrained(cfg.model, local_files_only=offline, **cfg.overrides())
    except OSError as e:
        if local_dir:
            where = (f"the directory {cfg.model!r} exists but lacks a loadable model "
                     "(expected config.json and model.safetensors or pytorch_model.bin)")
        else:
            cache = os.environ.get("HF_HUB_CACHE") or os.path.join(
                os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub")
            where = (f"{cfg.model!r} is not a local directory and is not in the Hugging Face cache {cache}"
                     + (" (offline: no download attempted)" if offline else ""))
        raise FileNotFoundError(
            f"wav2vec2 weights missing: {where}. Either run `huggingface-cli download {cfg.model}` on a "
            f"machine with internet and copy the cache there, or save the model with "
            f"`Wav2Vec2Model.from_pretrained(...).save_pretrained(DIR)` and set model.audio.model: DIR "
            f"in params.yaml.") from e


class AudioEncoder(nn.Module):
    """(B, samples) 16 kHz waveform -> (B, frames, hidden); frames = floor((samples - 400) / 320) + 1."""

    def __init__(self, cfg: AudioEncoderConfig, backbone: Wav2Vec2Model | None = None):
        super().__init__()
        self.cfg = cfg
        self.wav2vec2 = backbone = backbone if backbone is not None else load_wav2vec2(cfg)
        if cfg.freeze_feature_encoder:
            backbone.freeze_feature_encoder()
        self.out_dim = backbone.config.hidden_size

    @property
    def pretrained(self) -> bool:
        return self.cfg.pretrained

    def describe(self) -> str:
        c = self.wav2vec2.config
        size = f"{c.num_hidden_layers} layers x {c.hidden_size}"
        if self.cfg.pretrained:
            return f"audio encoder: pretrained wav2vec2 {self.cfg.model} ({size})"
        return (f"audio encoder: wav2vec2 ({size}) with RANDOM weights, NOT pretrained "
                "(model.audio.pretrained: false)")

    @classmethod
    def from_config(cls, cfg: AudioEncoderConfig, w2v_config: Wav2Vec2Config) -> AudioEncoder:
        """A randomly initialised wav2vec2 of the given shape (tests, benchmarks), with cfg's train-mode
        settings applied before construction (masked_spec_embed exists only when masking is on)."""
        w2v_config = copy.deepcopy(w2v_config)
        for k, v in cfg.overrides().items():
            setattr(w2v_config, k, v)
        return cls(dataclasses.replace(cfg, pretrained=False), Wav2Vec2Model(w2v_config))

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        # The 960h feature extractor normalises each utterance to zero mean, unit variance.
        wav = (wav - wav.mean(-1, keepdim=True)) / torch.sqrt(wav.var(-1, keepdim=True) + 1e-7)
        return self.wav2vec2(wav).last_hidden_state
