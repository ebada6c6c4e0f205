"""Networks and losses (open_clip style: model code here, training code in train/).

The names below load on first use (PEP 562), so importing one submodule (e.g. models.detector for
`pipeline predict`) does not import transformers through models.audio: about 4 s of start-up.
"""
import importlib

_WHERE = {
    "AVContrastiveModel": "models.avclip",
    "AVModelConfig": "models.avclip",
    "AudioEncoder": "models.audio",
    "AudioEncoderConfig": "models.audio",
    "HeadConfig": "models.avclip",
    "InfoNCELoss": "models.loss",
    "VideoEncoder": "models.video",
    "VideoEncoderConfig": "models.video",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
