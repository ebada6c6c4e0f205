"""SyncNet: the published architecture, loading a state dict keyed like syncnet_python's, MFCCs equal to
python_speech_features' (reference values computed with it), and the scorer on a real clip.

The official weights are not available offline, so the scorer test checks the plumbing (a real forward pass
over a real face track, an offset inside the search range), not the offset's value; the offset search itself
is tested exactly in test_track_units.py.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from preprocess.track.syncnet import SyncNet, SyncNetScorer, embed, face_crops, load_syncnet, mfcc


# python_speech_features.mfcc(pcm, 16000) of the signal below, frames 0, 50 and 98 (13 coefficients each).
PSF_REFERENCE = np.array([
    [18.1391, 24.7293, 16.5383, 11.1541, 5.3802, -1.5634, -7.6555, -13.8992, -18.361, -21.45, -21.529, -20.4292,
     -17.5478],
    [21.3822, 15.5364, -39.3778, -37.6742, -22.9542, 22.636, 19.5354, 6.4043, -16.1781, -9.0255, -7.0216, -4.4851,
     -8.5023],
    [21.8189, 7.9792, -30.4038, -22.7305, 15.7898, 27.508, -1.6617, -26.41, -11.7624, 14.7319, 14.7545, -6.163,
     -13.8885]])


def test_mfcc_matches_python_speech_features():
    t = np.arange(16000) / 16000
    signal = 0.3 * np.sin(2 * np.pi * (200 + 600 * t) * t) + 0.2 * np.sin(2 * np.pi * 1234 * t) * (t > 0.5)
    pcm = np.round(signal * 32767).astype(np.int16)
    coeffs = mfcc(pcm.astype(np.float32) / 32768.0)
    assert coeffs.shape == (13, 99)
    np.testing.assert_allclose(coeffs[:, [0, 50, 98]].T.numpy(), PSF_REFERENCE, atol=2e-3)


def test_architecture_shapes_and_size():
    torch.manual_seed(0)
    net = SyncNet().eval()
    assert sum(p.numel() for p in net.parameters()) == 13_631_616
    with torch.inference_mode():
        assert net.forward_aud(torch.zeros(2, 1, 13, 20)).shape == (2, 1024)
        assert net.forward_lip(torch.zeros(2, 3, 5, 224, 224)).shape == (2, 1024)


def test_state_dict_in_syncnet_python_layout_loads(tmp_path):
    torch.manual_seed(1)
    source = SyncNet().eval()
    path = tmp_path / "syncnet_v2.model"
    torch.save({f"__S__.{k}": v for k, v in source.state_dict().items()}, path)  # SyncNetInstance's naming
    loaded = load_syncnet(path)
    x = torch.randn(3, 1, 13, 20)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.forward_aud(x), source.forward_aud(x))
    torch.save({"wrong.weight": torch.zeros(1)}, path)
    with pytest.raises(RuntimeError):
        load_syncnet(path)


def test_face_crops_are_224_bgr_and_centred():
    frame = np.zeros((288, 360, 3), np.uint8)
    frame[100:200, 150:250] = (255, 0, 0)  # a red square in RGB
    crop = face_crops(frame[None], np.array([[150, 100, 250, 200]], np.float32))[0]
    assert crop.shape == (224, 224, 3)
    assert crop[60, 112, 2] == 255 and crop[60, 112, 0] == 0  # red lands in the BGR red channel


def test_scorer_decides_in_the_stage_step_on_a_clip(clips, tmp_path):
    from dataclasses import replace

    from preprocess.media import read_audio
    from preprocess.resample.convert import ResampleParams, resample_video
    from preprocess.track.detect import DlibHogDetector
    from preprocess.track.track_params import TrackParams
    from preprocess.track.sync import SyncParams
    from preprocess.track.track_video import track_video

    torch.set_num_threads(1)
    video, audio = tmp_path / "v.mkv", tmp_path / "a.wav"
    resample_video(clips.grid[0], video, audio, ResampleParams())
    torch.manual_seed(0)
    weights = tmp_path / "syncnet_v2.model"
    torch.save(SyncNet().state_dict(), weights)  # untrained: checks the plumbing, not the offset's value
    scorer = SyncNetScorer(weights, vshift=15, device="cpu")
    params = TrackParams()  # the default detector, dlib: the scorer gets a face track from any detector
    detector = DlibHogDetector(params.detect)
    strict = track_video(video, audio, replace(params, sync=replace(SyncParams(), syncnet_min_confidence=1e9)),
                         detector, scorer)
    seg = strict.segments[0]
    assert seg["sync_method"] == "syncnet" and -15 <= seg["sync_offset"] <= 15
    assert np.isfinite(seg["sync_confidence"]) and seg["audio_shift_frames"] == 0  # not confident: no shift
    trusting = track_video(video, audio, replace(params, sync=replace(SyncParams(), syncnet_min_confidence=-1e9)),
                           detector, scorer)
    assert trusting.segments[0]["audio_shift_frames"] == -trusting.segments[0]["sync_offset"]

    pcm = read_audio(audio)[:640 * 30]
    video_emb, audio_emb = embed(scorer.net, np.zeros((30, 224, 224, 3), np.uint8), pcm)
    # syncnet_python scores frames 0 .. n-6 (lastframe = n - 5): the last window lacks its final MFCC frame
    assert video_emb.shape == audio_emb.shape == (25, 1024)
