"""Networks and losses (open_clip style: model code here, training code in train/)."""
from models.audio import AudioEncoder, AudioEncoderConfig
from models.avclip import AVContrastiveModel, AVModelConfig, HeadConfig
from models.loss import InfoNCELoss
from models.video import VideoEncoder, VideoEncoderConfig

__all__ = [
           "AVContrastiveModel",
           "AVModelConfig",
           "AudioEncoder",
           "AudioEncoderConfig",
           "HeadConfig",
           "InfoNCELoss",
           "VideoEncoder",
           "VideoEncoderConfig",
]
