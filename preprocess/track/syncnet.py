"""SyncNet (Chung & Zisserman, 2016; the released syncnet_python "syncnet_v2" network) and its offset measure.

The layers carry the names of syncnet_python's `S` module, so the official `syncnet_v2.model` state dict loads
as is. Inputs as there: 5 consecutive 224x224 BGR face crops (0..255) against 20 MFCC frames (13 coefficients,
100 per second: 4 per video frame) of the same 0.2 s. MFCCs are computed with torchaudio following
python_speech_features' recipe (pre-emphasis 0.97, 25 ms rectangular frames, 512-point power spectrum,
26 HTK mel filters up to 8 kHz on rounded FFT bins, DCT-II, lifter 22, c0 replaced by the log frame energy):
the network was trained on exactly those features.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn
import torchaudio.functional as AF

from preprocess.contract import SAMPLE_RATE, SAMPLES_PER_FRAME
from preprocess.track.sync import SYNCNET, SyncScore, offset_search

WINDOW = 5  # video frames per SyncNet input
MFCC_PER_FRAME = 4  # 100 MFCC frames per second / 25 video frames per second
CROP = 224


def _conv2d(cin, cout, k, **kw):
    return [nn.Conv2d(cin, cout, kernel_size=k, **kw), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _conv3d(cin, cout, k, **kw):
    return [nn.Conv3d(cin, cout, kernel_size=k, **kw), nn.BatchNorm3d(cout), nn.ReLU(inplace=True)]


def _fc(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, dim))


class SyncNet(nn.Module):
    """The published SyncNet: an audio stream on MFCC images, a lip stream on 5-frame clips, 1024-d embeddings."""

    def __init__(self, embedding: int = 1024):
        super().__init__()
        self.netcnnaud = nn.Sequential(
            *_conv2d(1, 64, (3, 3), stride=(1, 1), padding=(1, 1)), nn.MaxPool2d((1, 1), stride=(1, 1)),
            *_conv2d(64, 192, (3, 3), stride=(1, 1), padding=(1, 1)), nn.MaxPool2d((3, 3), stride=(1, 2)),
            *_conv2d(192, 384, (3, 3), padding=(1, 1)),
            *_conv2d(384, 256, (3, 3), padding=(1, 1)),
            *_conv2d(256, 256, (3, 3), padding=(1, 1)), nn.MaxPool2d((3, 3), stride=(2, 2)),
            *_conv2d(256, 512, (5, 4), padding=(0, 0)),
        )
        self.netfcaud = _fc(embedding)
        self.netfclip = _fc(embedding)
        self.netcnnlip = nn.Sequential(
            *_conv3d(3, 96, (5, 7, 7), stride=(1, 2, 2), padding=0), nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),
            *_conv3d(96, 256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            *_conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)),
            *_conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)),
            *_conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),
            *_conv3d(256, 512, (1, 6, 6), padding=0),
        )

    def forward_aud(self, mfcc: torch.Tensor) -> torch.Tensor:
        """(N, 1, 13, 20) MFCC windows -> (N, 1024)."""
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def forward_lip(self, clips: torch.Tensor) -> torch.Tensor:
        """(N, 3, 5, 224, 224) BGR clips, 0..255 -> (N, 1024)."""
        return self.netfclip(self.netcnnlip(clips).flatten(1))


def load_syncnet(path: Path, device: str = "cpu") -> SyncNet:
    """The official weights (a state dict keyed like syncnet_python's `S`); DataParallel/instance prefixes dropped."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, nn.Module):
        state = state.state_dict()
    state = {k.removeprefix("module.").removeprefix("__S__."): v for k, v in state.items()}
    net = SyncNet()
    net.load_state_dict(state)
    return net.to(device).eval()


def mfcc(audio: np.ndarray) -> torch.Tensor:
    """(13, n) MFCCs, 100 per second, of 16 kHz audio given as float in [-1, 1] (scaled to int16 like the original)."""
    x = torch.as_tensor(audio, dtype=torch.float64) * 32768.0
    x = AF.preemphasis(x, 0.97)
    frame_len, step, nfft = 400, 160, 512
    n = 1 + max(0, int(np.ceil((len(x) - frame_len) / step)))
    x = torch.nn.functional.pad(x, (0, max(0, (n - 1) * step + frame_len - len(x))))
    frames = x.unfold(0, frame_len, step)[:n]
    power = torch.fft.rfft(frames, nfft).abs() ** 2 / nfft  # (n, 257)
    energy = power.sum(1).clamp_min(torch.finfo(torch.float64).eps)
    fbank = torch.from_numpy(_psf_filterbank(26, nfft, SAMPLE_RATE)).T
    mel = (power @ fbank).clamp_min(torch.finfo(torch.float64).eps).log()
    dct = AF.create_dct(13, 26, "ortho").double()
    ceps = mel @ dct
    lift = 1 + 11.0 * torch.sin(torch.pi * torch.arange(13, dtype=torch.float64) / 22)
    ceps = ceps * lift
    ceps[:, 0] = energy.log()
    return ceps.T.float()


def _psf_filterbank(n_filters: int, nfft: int, rate: int) -> np.ndarray:
    """(n_filters, nfft/2+1) triangles on FFT bins rounded down, as python_speech_features builds them."""
    hz2mel = lambda hz: 2595 * np.log10(1 + hz / 700.0)  # noqa: E731
    mel2hz = lambda mel: 700 * (10 ** (mel / 2595.0) - 1)  # noqa: E731
    bins = np.floor((nfft + 1) * mel2hz(np.linspace(hz2mel(0), hz2mel(rate / 2), n_filters + 2)) / rate)
    bank = np.zeros((n_filters, nfft // 2 + 1))
    for j in range(n_filters):
        lo, mid, hi = bins[j], bins[j + 1], bins[j + 2]
        rise, fall = np.arange(int(lo), int(mid)), np.arange(int(mid), int(hi))
        bank[j, rise] = (rise - lo) / (mid - lo)
        bank[j, fall] = (hi - fall) / (hi - mid)
    return bank


def face_crops(frames_rgb: np.ndarray, boxes: np.ndarray, crop_scale: float = 0.4) -> np.ndarray:
    """syncnet_python's crop: a square around the box centre, padded by crop_scale, resized to 224; BGR uint8."""
    out = np.empty((len(frames_rgb), CROP, CROP, 3), np.uint8)
    for t, (frame, box) in enumerate(zip(frames_rgb, boxes)):
        half = max(box[2] - box[0], box[3] - box[1]) / 2
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        pad = int(half * crop_scale)
        padded = cv2.copyMakeBorder(frame[..., ::-1], pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(110, 110, 110))
        cx, cy = cx + pad, cy + pad
        y1, y2 = int(cy - half), int(cy + half * (1 + 2 * crop_scale))
        x1, x2 = int(cx - half * (1 + crop_scale)), int(cx + half * (1 + crop_scale))
        patch = padded[max(0, y1):y2, max(0, x1):x2]
        out[t] = cv2.resize(patch, (CROP, CROP))
    return out


@torch.inference_mode()
def embed(net: SyncNet, crops_bgr, audio: np.ndarray, device: str = "cpu",
          batch: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Video and audio embeddings for every 5-frame window that has its full 0.2 s of audio.

    `crops_bgr`: (T, 224, 224, 3) uint8, or an iterable of such blocks in frame order, so a long track is
    never whole in memory (150 kB a frame as uint8, 600 kB as the network's float input). Windows are
    embedded in the same batches either way, so the results do not depend on how the crops arrive.
    """
    coeffs = mfcc(audio)
    n_audio = coeffs.shape[1] // MFCC_PER_FRAME  # frames with their 4 MFCC frames
    blocks = [crops_bgr] if isinstance(crops_bgr, np.ndarray) else crops_bgr
    held, first, start = np.zeros((0, CROP, CROP, 3), np.uint8), 0, 0  # held[i] is frame first + i
    video_emb, audio_emb = [], []

    def run(stop: int) -> None:
        """Embed windows [start, stop) from the held frames, then let go of the frames no window needs."""
        nonlocal held, first, start
        frames = torch.from_numpy(held[: stop + WINDOW - 1 - first]).permute(3, 0, 1, 2).float()
        idx = range(start, stop)
        clips = torch.stack([frames[:, t - first:t - first + WINDOW] for t in idx]).to(device)
        windows = torch.stack([coeffs[None, :, MFCC_PER_FRAME * t: MFCC_PER_FRAME * t + 20] for t in idx]).to(device)
        video_emb.append(net.forward_lip(clips).cpu())
        audio_emb.append(net.forward_aud(windows).cpu())
        held, first, start = held[stop - first:], stop, stop

    for block in blocks:
        # Frames past the audio's end start no window: not keeping them bounds `held` when the audio is short.
        held = np.concatenate([held, block[: max(0, n_audio - first - len(held))]])
        # A full batch is final once its last window's frames are held and the audio covers it.
        while first + len(held) >= start + batch + WINDOW - 1 and start + batch <= n_audio - WINDOW + 1:
            run(start + batch)
    n = min(first + len(held), n_audio) - WINDOW + 1
    while start < n:
        run(min(n, start + batch))
    if not video_emb:
        return np.zeros((0, 1024), np.float32), np.zeros((0, 1024), np.float32)
    return torch.cat(video_emb).numpy(), torch.cat(audio_emb).numpy()


class SyncNetScorer:
    """Scores a face track against the audio with SyncNet: offset within +-vshift frames and confidence."""

    def __init__(self, weights: Path, vshift: int = 15, device: str | None = None):
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.net = load_syncnet(weights, self.device)
        self.vshift = vshift

    def score(self, video: Path, track, audio: np.ndarray) -> SyncScore:
        clip_audio = audio[track.start * SAMPLES_PER_FRAME: track.end * SAMPLES_PER_FRAME]
        video_emb, audio_emb = embed(self.net, self._crops(video, track), clip_audio, self.device)
        if len(video_emb) == 0:
            return SyncScore(SYNCNET, float("nan"), None)
        offset, confidence, _ = offset_search(video_emb, audio_emb, self.vshift)
        return SyncScore(SYNCNET, confidence, offset)

    @staticmethod
    def _crops(video: Path, track):
        """The track's face crops, a decoded batch at a time (never the whole track in memory)."""
        from preprocess.media import iter_frame_batches

        frame = 0
        for batch in iter_frame_batches(video):
            lo, hi = max(track.start, frame), min(track.end, frame + len(batch))
            if lo < hi:
                yield face_crops(batch[lo - frame: hi - frame], track.boxes[lo - track.start: hi - track.start])
            frame += len(batch)
            if frame >= track.end:
                break
