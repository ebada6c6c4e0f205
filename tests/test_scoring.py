"""Detector model and scoring API: shapes, save/load round trip, clip cutting, video-level aggregation."""
import numpy as np
import pytest
import torch

from models.detector import Detector, DetectorConfig
from models.presets import TINY_VIDEO
from train.augment import AugmentConfig, centre_clip
from train.scoring import clip_starts, load_detector, probability, save_detector, video_clip_logits, video_score


def tiny_detector(seed: int = 0, **kw) -> Detector:
    torch.manual_seed(seed)
    return Detector(TINY_VIDEO, DetectorConfig(hidden=16, **kw))


@pytest.mark.parametrize("backend", ["transformer", "mstcn"])
def test_forward_gives_one_logit_per_clip(backend):
    from dataclasses import replace

    det = Detector(replace(TINY_VIDEO, backend=backend), DetectorConfig(hidden=16)).eval()
    assert det(torch.randn(3, 25, 88, 88)).shape == (3,)


def test_clip_starts_non_overlapping_tail_dropped():
    assert clip_starts(25) == [0]
    assert clip_starts(24) == []
    assert clip_starts(74) == [0, 25]
    assert clip_starts(75) == [0, 25, 50]
    assert clip_starts(10, clip=5) == [0, 5]
    with pytest.raises(ValueError):
        clip_starts(10, clip=0)


def test_video_score_is_mean_of_clip_logits_over_segments():
    seg_a, seg_b = np.array([2.0, -1.0, 0.5]), np.array([4.0])
    score = video_score(np.concatenate([seg_a, seg_b]))
    assert score == pytest.approx(1.375)
    assert probability(score) == pytest.approx(1 / (1 + np.exp(-1.375)))
    assert probability(-800.0) == 0.0 and probability(800.0) == 1.0  # no overflow
    with pytest.raises(ValueError, match="no clip"):
        video_score([])


def test_clip_logits_match_a_direct_forward_of_each_clip():
    det = tiny_detector().eval()
    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, (60, 96, 96), dtype=np.uint8)
    logits = video_clip_logits(det, video, "cpu", batch_size=1)
    assert logits.shape == (2,) and logits.dtype == np.float32
    view = AugmentConfig(crop=88, mean=0.421, std=0.165)
    with torch.no_grad():
        direct = det(torch.stack([centre_clip(video[0:25], view), centre_clip(video[25:50], view)])).numpy()
    np.testing.assert_allclose(logits, direct, rtol=1e-5, atol=1e-5)
    # batching does not change the result; the tail (frames 50-59) is not scored
    np.testing.assert_allclose(video_clip_logits(det, video, "cpu", batch_size=8), logits, rtol=1e-5, atol=1e-5)
    assert video_clip_logits(det, video[:20], "cpu").shape == (0,)
    with pytest.raises(ValueError, match="uint8"):
        video_clip_logits(det, video.astype(np.float32), "cpu")


def test_save_load_round_trip(tmp_path):
    det = tiny_detector(seed=3, dropout=0.3)
    det.freeze_frontend()
    path = tmp_path / "detector.pt"
    save_detector(path, det, {"params_hash": "abc", "shards_sha256": {"x": "y"}})
    loaded, meta = load_detector(path)
    assert meta == {"params_hash": "abc", "shards_sha256": {"x": "y"}}
    assert not loaded.training and loaded.cfg == det.cfg and loaded.video_cfg == det.video_cfg
    for (k, a), (k2, b) in zip(det.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    x = torch.randn(2, 25, 88, 88)
    with torch.no_grad():
        assert torch.equal(det.eval()(x), loaded(x))


def test_missing_detector_names_the_stage(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"dvc repro finetune") as e:
        load_detector(tmp_path / "nope.pt")
    assert "nope.pt" in str(e.value)
    torch.save({"video_encoder": {}}, tmp_path / "encoder.pt")
    with pytest.raises(ValueError, match="not a detector"):
        load_detector(tmp_path / "encoder.pt")


def test_frozen_frontend_bn_stays_in_eval_mode():
    det = tiny_detector()
    det.freeze_frontend()
    det.train()
    assert det.head.training and det.encoder.backend.training
    assert not det.encoder.stem.bn.training
    assert all(not m.training for m in det.encoder.trunk.modules())
    assert all(not p.requires_grad for m in det.frontend() for p in m.parameters())
    before = {k: v.clone() for k, v in det.encoder.stem.state_dict().items()}
    det(torch.randn(2, 25, 88, 88))  # a train-mode forward must not touch running statistics
    assert all(torch.equal(before[k], v) for k, v in det.encoder.stem.state_dict().items())


@pytest.mark.parametrize("backend", ["transformer", "mstcn"])
def test_backend_layers_cover_every_backend_parameter_once(backend):
    from dataclasses import replace

    det = Detector(replace(TINY_VIDEO, backend=backend))
    layers = det.backend_layers()
    assert len(layers) == TINY_VIDEO.layers
    ids = [id(p) for layer in layers for p in layer]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in det.encoder.backend.parameters()}
    if backend == "transformer":
        assert any(p is det.encoder.backend.pos for p in layers[0])
