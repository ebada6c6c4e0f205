"""The pretrained audio-visual pair from artifacts/pretrain/encoder.pt, rebuilt offline, and its embeddings of
the windows of one mouth-crop segment (the zero-shot audio-visual mismatch score, train/av_mismatch.py)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from transformers import Wav2Vec2Config

from models.audio import AudioEncoder
from models.avclip import AVContrastiveModel, AVModelConfig
from preprocess.contract import SAMPLES_PER_FRAME
from preprocess.settings import from_dict
from train.augment import AugmentConfig, centre_clip


def load_pair(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[AVContrastiveModel, dict]:
    """-> (the pair in eval mode, the resolved pretraining config). The wav2vec2 is rebuilt from the config
    stored beside its weights: nothing is downloaded, whatever model.audio says."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no pretrained encoder at {path}: it is made by the pretrain stage "
                                "(`dvc repro pretrain`)")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if "pair" not in ckpt:
        raise ValueError(f"{path} holds only the video encoder (made before the audio encoder was kept): rerun "
                         "`dvc repro pretrain` for the pair the audio-visual mismatch score needs")
    cfg = from_dict(AVModelConfig, ckpt["config"]["model"], "encoder.pt model")
    audio = AudioEncoder.from_config(cfg.audio, Wav2Vec2Config.from_dict(ckpt["pair"]["wav2vec2_config"]))
    model = AVContrastiveModel(cfg, audio_encoder=audio)
    model.load_state_dict(ckpt["pair"]["weights"], strict=True)
    return model.to(device).eval(), ckpt["config"]


def grid(n_frames: int, window: int, stride: int) -> list[int]:
    """Window starts 0, stride, 2 x stride, ... of every whole window in n_frames."""
    return list(range(0, n_frames - window + 1, stride))


@torch.inference_mode()
def embed_segment(model: AVContrastiveModel, video: np.ndarray, audio: np.ndarray, window: int,
                  video_starts: list[int], audio_starts: list[int], view: AugmentConfig,
                  device: str | torch.device = "cpu", batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised embeddings (len(video_starts), D) of the mouth windows and (len(audio_starts), D) of
    the audio windows of one segment (uint8 (T, 96, 96) crops, float (T * 640,) audio)."""
    def batched(items, embed):
        out = []
        for i in range(0, len(items), batch_size):
            out.append(torch.nn.functional.normalize(embed(torch.stack(items[i:i + batch_size]).to(device))
                                                     .float(), dim=-1).cpu())
        return torch.cat(out).numpy()

    clips = [centre_clip(video[s:s + window], view) for s in video_starts]
    sounds = [torch.from_numpy(np.ascontiguousarray(audio[s * SAMPLES_PER_FRAME:(s + window) * SAMPLES_PER_FRAME],
                                                    np.float32)) for s in audio_starts]
    return batched(clips, model.embed_video), batched(sounds, model.embed_audio)
