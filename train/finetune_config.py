"""params.yaml -> the fine-tuning and evaluation configs (unknown keys are errors), and their hash."""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field

from models.video import VideoEncoderConfig
from preprocess.settings import from_dict, json_hash, load_yaml, section
from train.augment import AugmentConfig


@dataclass(frozen=True)
class HeadParams:
    hidden: int | None = None         # MLP hidden width; null: the encoder width
    dropout: float = 0.5


@dataclass(frozen=True)
class FinetuneConfig:
    init: str = "pretrained"          # pretrained (artifacts/pretrain/encoder.pt) | scratch (random weights)
    encoder: str = "artifacts/pretrain/encoder.pt"
    seed: int = 0
    epochs: int = 15                  # upper bound; early stopping on val AUC usually ends the run
    freeze: str = "stem"              # stem (the trunk fine-tunes too) | stem_trunk (paper: only backend and head learn)
    lr_head: float = 0.001            # MLP head (paper Sec. 3.3: 0.01, params/paper.yaml)
    lr_last_layer: float = 0.0005     # last transformer layer (last TCN block for mstcn; paper: 0.005)
    layer_decay: float = 0.9          # x this per earlier layer
    lr_decay: float = 0.9             # x this per epoch, every group (the pretraining schedule)
    weight_decay: float = 0.01        # AdamW, not on biases / norms / positional embeddings
    grad_clip: float = 1.0
    patience: int = 5                 # epochs without a better val AUC (ties: lower val loss) before stopping
    min_epochs: int = 3               # model selection starts after this many epochs
    balance: str = "pretrain_reals"   # pretrain_reals | oversample | none
    exclude_methods: tuple = ()       # fake methods left out of training (Table 2 sets this per stage)
    clip: int = 25                    # frames per clip: 1 s
    clips_per_sample: int = 4         # random clips per sample (segment) and epoch
    batch_size: int = 16              # per process
    num_workers: int = 1
    shuffle_buffer: int = 256
    max_steps_per_epoch: int | None = None  # cap for smoke runs; null: the whole epoch
    eval_batch_size: int = 32         # clips per forward when scoring val videos
    log_every: int = 10
    bf16: bool = True                 # autocast on GPU
    head: HeadParams = field(default_factory=HeadParams)


def _check(cfg: FinetuneConfig) -> None:
    if cfg.freeze not in ("stem_trunk", "stem"):
        raise ValueError(f"finetune.freeze must be stem_trunk or stem, got {cfg.freeze!r}")


@dataclass(frozen=True)
class FinetuneSetup:
    video: VideoEncoderConfig
    augment: AugmentConfig            # the pretraining augmentation (pretrain.data.augment)
    finetune: FinetuneConfig

    def resolved(self) -> dict:
        d = {"video": dataclasses.asdict(self.video.resolved()), "augment": dataclasses.asdict(self.augment),
             "finetune": dataclasses.asdict(self.finetune)}
        return json.loads(json.dumps(d))

    def hash(self) -> str:
        return json_hash(self.resolved())


def load_setup(path: str | os.PathLike, **overrides) -> FinetuneSetup:
    """Model, augmentation and fine-tuning params; `overrides` replace finetune keys (e.g. exclude_methods)."""
    p = load_yaml(path)
    ft = {**(p.get("finetune") or {}), **overrides}
    cfg = from_dict(FinetuneConfig, ft, "finetune")
    _check(cfg)
    return FinetuneSetup(section(p, "model.video", VideoEncoderConfig), section(p, "pretrain.data.augment", AugmentConfig),
                         cfg)
