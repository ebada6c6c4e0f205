"""params.yaml -> typed configs. Unknown keys are errors (a typo must not silently fall back to a default),
and the hash of the resolved configs identifies a training run."""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field

from models.avclip import AVModelConfig
from preprocess.settings import json_hash, load_yaml, section
from train.data import LoaderConfig


@dataclass(frozen=True)
class LearningRates:
    """Peak AdamW rates per module (reached at the end of the warm-up). The wav2vec2 CNN stays frozen."""
    video: float = 1e-3               # video encoder (the demo's small one; the paper: 0.01, which collapses here)
    audio: float = 1e-5               # pretrained wav2vec2 transformer: low enough to keep its weights intact
    heads: float = 0.001              # both projection heads
    audio_scratch: float = 0.001      # a random-init wav2vec2 (model.audio.pretrained: false): nothing to keep


@dataclass(frozen=True)
class PretrainConfig:
    seed: int = 0
    epochs: int = 6                   # upper bound and the cosine's length; early stopping may end it sooner
    lr: LearningRates = field(default_factory=LearningRates)
    warmup_steps: int = 30            # linear warm-up from 0 over the first optimizer steps
    schedule: str = "cosine"          # after the warm-up: cosine (per step, down to min_lr at the last step of
                                      # `epochs`) | epoch_decay (the paper's x lr_decay per epoch)
    lr_decay: float = 0.9             # epoch_decay: the factor per epoch
    min_lr: float = 1e-6              # the floor of the video rate (1/100 of the peak, as in the paper); other
                                      # modules floor at the same fraction of their peak
    weight_decay: float = 0.01
    temperature: float = 0.1
    grad_clip: float = 1.0            # max global grad norm; 0 disables
    patience: int = 3                 # stop after this many epochs without a better `stop_on`
    stop_on: str = "val_loss"         # val_loss: InfoNCE over the val gallery (the weights of its best epoch are
                                      # exported) | train_loss (the paper's; without val clips the same)
    bf16: bool = True                 # autocast on GPU (ignored on CPU)
    max_steps_per_epoch: int | None = None  # cap for smoke runs; null: the whole corpus each epoch
    log_every: int = 5                # steps between progress lines on stdout (the first is always printed)
    eval_every: int = 1               # epochs between val retrievals (and always after the last epoch)
    val_max_samples: int = 1000       # audio-to-video retrieval gallery size on the val split
    val_window_starts: tuple = (0, 50, 100)  # windows per val clip: "centre" or frame offsets
    # Collapse guard: a step is "stuck" when the loss is within collapse_tolerance (relative) of
    # ln(global batch), the loss of embeddings that tell no pair apart, or when the spread of either
    # modality's normalised embeddings over the batch falls below collapse_min_spread (1: spread over
    # the sphere, 0: one point). collapse_steps stuck steps in a row are reported as a collapse.
    collapse_steps: int = 200
    collapse_tolerance: float = 0.02
    collapse_min_spread: float = 0.05
    data: LoaderConfig = field(default_factory=LoaderConfig)

    def __post_init__(self):
        if self.schedule not in ("cosine", "epoch_decay"):
            raise ValueError(f"pretrain.schedule must be cosine or epoch_decay, got {self.schedule!r}")
        if self.stop_on not in ("val_loss", "train_loss"):
            raise ValueError(f"pretrain.stop_on must be val_loss or train_loss, got {self.stop_on!r}")


def resolved_dict(model: AVModelConfig, pretrain: PretrainConfig) -> dict:
    m = dataclasses.replace(model, video=model.video.resolved())
    return json.loads(json.dumps({"model": dataclasses.asdict(m), "pretrain": dataclasses.asdict(pretrain)}))


def config_hash(model: AVModelConfig, pretrain: PretrainConfig) -> str:
    return json_hash(resolved_dict(model, pretrain))


def load_configs(path: str | os.PathLike) -> tuple[AVModelConfig, PretrainConfig]:
    params = load_yaml(path)
    return section(params, "model", AVModelConfig), section(params, "pretrain", PretrainConfig)
