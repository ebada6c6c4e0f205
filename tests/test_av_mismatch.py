"""The zero-shot audio-visual mismatch score: the rank rule, its AUCs against scikit-learn's, and a pair
pretrained (tiny, in the test) on real clips telling a clip's own audio from the same audio shifted by 10 frames
and from another clip's audio."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from train.av_mismatch import MismatchParams, window_ranks
from train.evaluate import zero_shot_aucs


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_own_audio_first_scores_zero_and_unrelated_audio_about_half():
    rng = np.random.default_rng(0)
    audio_starts = list(range(0, 105, 5))
    video_starts = [0, 25, 50, 75, 100]
    za = unit(rng.normal(size=(len(audio_starts), 16)))
    own = [audio_starts.index(s) for s in video_starts]
    in_sync = window_ranks(za[own], za, video_starts, audio_starts, min_offset=10)
    assert np.all(in_sync == 0)  # each video window is its own audio: nothing competes with that
    unrelated = window_ranks(unit(rng.normal(size=(5, 16))), za, video_starts, audio_starts, 10)
    assert 0.2 < unrelated.mean() < 0.8
    # a video window matching the audio 10 frames later: that competitor beats its own audio
    shifted = za[[audio_starts.index(s + 10) for s in video_starts[:-1]]]
    r = window_ranks(shifted, za, video_starts[:-1], audio_starts, 10)
    assert np.all(r > 0)
    # ties count against the video: identical embeddings everywhere rank 1
    flat = np.ones((2, 4)) / 2
    assert np.all(window_ranks(flat[:1], np.repeat(flat[:1], 5, 0), [0], [0, 5, 10, 15, 20], 10) == 1)
    # no competitor: undefined
    assert np.isnan(window_ranks(za[:1], za[:2], [0], [0, 5], 10)[0])


def test_params_are_checked():
    with pytest.raises(ValueError, match="multiple"):
        MismatchParams(stride=25, audio_stride=10)
    with pytest.raises(ValueError, match="at least 1"):
        MismatchParams(min_offset=0)


def test_aucs_are_scikit_learns_and_nulls_are_left_out():
    df = pd.DataFrame({"label": ["real", "real", "fake", "fake", "fake", "real"],
                       "av_mismatch": [0.1, 0.3, 0.45, 0.2, np.nan, 0.05],
                       "energy_correlation": [0.8, 0.6, 0.1, 0.7, 0.2, np.nan]})
    got = zero_shot_aucs(df)
    av = df.dropna(subset=["av_mismatch"])
    en = df.dropna(subset=["energy_correlation"])
    assert got["av_mismatch_auc"] == pytest.approx(roc_auc_score(av.label == "fake", av.av_mismatch))
    assert got["energy_mismatch_auc"] == pytest.approx(roc_auc_score(en.label == "fake", -en.energy_correlation))
    assert got["n_av_mismatch"] == 5
    assert zero_shot_aucs(df[df.label == "real"])["av_mismatch_auc"] is None  # one class: undefined, not 0.5


# --- a real pair on real clips ---------------------------------------------------------------------------

WINDOW = 25  # the test pair's window: GRID clips are 3 s, which leaves several windows of 1 s


@pytest.fixture(scope="module")
def two_clips(clips):
    """Mouth crops and audio of two GRID clips (real ones from ../shared, else the demo generator's), through
    the stages' own resample/track/align/crop code."""
    from pipeline import video_crops as chain
    from preprocess.shardformat import crops_to_gray

    params = chain.chain_params()
    models = chain.load_models(params)
    out = []
    for path in clips.grid[:2]:
        crops = chain.video_crops(path, params, models)
        assert crops.ok, crops.reason
        seg = max(crops.segments, key=lambda s: len(s.frames))
        out.append((crops_to_gray(seg.crops), seg.audio))
    return out


def pretrain_tiny_pair(clips, steps: int = 150, seed: int = 0):
    """A tiny pair trained with the pretraining step on random windows of the clips (in-batch negatives are
    other windows of the same clips: it has to learn when, not only who)."""
    from dataclasses import replace

    from models.audio import AudioEncoder, AudioEncoderConfig
    from models.avclip import AVContrastiveModel, AVModelConfig, HeadConfig
    from models.loss import InfoNCELoss
    from models.presets import TINY_VIDEO, tiny_wav2vec2_config
    from train.augment import AugmentConfig, centre_clip
    from train.pretrain import make_optimizer, train_step
    from train.pretrain_config import LearningRates, PretrainConfig

    torch.manual_seed(seed)
    audio = AudioEncoder.from_config(AudioEncoderConfig(mask_time_prob=0.0), tiny_wav2vec2_config(dropout=0.0))
    model = AVContrastiveModel(AVModelConfig(video=replace(TINY_VIDEO, max_frames=WINDOW, dropout=0.0),
                                             head=HeadConfig(tokens=2, dim=32)), audio_encoder=audio)
    cfg = PretrainConfig(lr=LearningRates(video=1e-3, heads=1e-3, audio_scratch=1e-3))
    opt, loss_fn = make_optimizer(model, cfg), InfoNCELoss(0.1)
    view, rng = AugmentConfig(), np.random.default_rng(seed)
    model.train()
    for _ in range(steps):
        picks = [(c, int(rng.integers(0, len(clips[c][0]) - WINDOW + 1))) for c in rng.integers(0, len(clips), 8)]
        batch = {"video": torch.stack([centre_clip(clips[c][0][s:s + WINDOW], view) for c, s in picks]),
                 "audio": torch.stack([torch.from_numpy(clips[c][1][s * 640:(s + WINDOW) * 640].copy())
                                       for c, s in picks])}
        train_step(model, loss_fn, opt, batch, cfg, torch.device("cpu"))
    return model.eval(), view


def test_a_pretrained_pair_scores_shifted_and_foreign_audio_as_mismatched(two_clips):
    from train.av_mismatch import segment_ranks

    model, view = pretrain_tiny_pair(two_clips)
    params = MismatchParams(stride=5, audio_stride=5, min_offset=10)
    (video, audio), (_, other) = two_clips
    n = min(len(audio), len(other))

    def score(sound):
        _, ranks = segment_ranks(model, video[:n // 640], sound[:n], WINDOW, view, params)
        return float(np.nanmean(ranks))

    shift = 10 * 640  # the audio 10 frames (0.4 s) late: frame t now carries the sound of frame t - 10
    late = np.concatenate([np.zeros(shift, np.float32), audio[:-shift]])
    as_is, shifted, foreign = score(audio), score(late), score(other)
    assert as_is < shifted and as_is < foreign, (as_is, shifted, foreign)
    assert as_is < 0.25  # its own audio beats most competitors
