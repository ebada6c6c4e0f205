"""align: a frame whose landmarks jump off the trajectory (align.max_jump) is treated like a missing frame:
interpolated, and counted in the align record and the shard manifest (outlier_frames)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import copy_clip

from preprocess.align.align_params import AlignParams
from preprocess.align.smoothing import landmark_jumps, landmark_outliers, trajectory

MOUTH = slice(48, 68)


def talking_head(n: int = 100, seed: int = 0) -> np.ndarray:
    """(n, 68, 2) frame px: a face 40 px across the mouth, panned to and fro at up to 3.5 px/frame across and
    2 down (turning within 10-20 frames), the jaw and lower lip opening up to 0.3 mouth widths at 4 Hz (speech),
    and 0.3 px of landmark noise."""
    rng = np.random.default_rng(seed)
    face = rng.normal(0, 25, (68, 2))
    angle = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    face[MOUTH] = np.stack([20 * np.cos(angle), 40 + 8 * np.sin(angle)], axis=1)  # 48 and 54: the corners
    face[8] = (0, 72)  # the chin tip, 32 px below the mouth centre
    t = np.arange(n)
    path = np.stack([3.5 * 40 / np.pi * np.sin(np.pi * t / 40), 2 * 30 / np.pi * np.sin(np.pi * t / 30)], axis=1)
    points = face[None] + path[:, None]
    opening = 12 * np.clip(np.sin(2 * np.pi * 4 * t / 25), 0, None)  # px: 0.3 mouth widths
    lower = [*range(5, 12), *range(55, 60), *range(64, 68)]  # lower jaw, lower lip
    points[:, lower, 1] += opening[:, None]
    return points + rng.normal(0, 0.3, points.shape)


def onto_chin(points: np.ndarray, frames) -> np.ndarray:
    """The issue's outlier: a frame's 68 points moved so that the mouth centre sits on the chin tip (point 8)."""
    out = points.copy()
    for f in frames:
        out[f] += out[f, 8] - out[f, MOUTH].mean(0)
    return out


def test_the_trajectory_follows_steady_motion_to_the_very_ends():
    t = np.arange(30, dtype=np.float64)[:, None, None]
    steady = np.random.default_rng(1).normal(0, 20, (1, 68, 2)) + t * np.array([3.5, -2.0])
    assert np.allclose(trajectory(steady, 6), steady, atol=1e-9)  # a plain median would lag 3 frames at the ends
    assert np.allclose(trajectory(steady[:4], 6), steady[:4], atol=1e-9)  # shorter than the window


def test_a_jump_onto_the_chin_is_an_outlier_and_speech_and_motion_are_not():
    head = talking_head()
    jumps = landmark_jumps(head, np.ones(len(head), bool), 6)
    assert jumps.max() < 0.25, jumps.max()  # speech, turns and noise stay well under align.max_jump
    planted = [0, 40, 41, 99]  # both ends, and two frames in a row
    bad = onto_chin(head, planted)
    assert (np.linalg.norm(bad - head, axis=-1).mean(-1)[planted] > 25).all()  # ~30 px: far off the face
    default = AlignParams().max_jump
    assert np.flatnonzero(landmark_outliers(bad, np.ones(len(bad), bool), 6, default)).tolist() == planted
    assert not landmark_outliers(bad, np.ones(len(bad), bool), 6, 0.0).any()  # 0: the test is off
    # frames already missing (NaN) are left out of the trajectory and never called outliers
    valid = np.ones(len(bad), bool)
    valid[60:70] = False
    bad[60:70] = np.nan
    assert np.flatnonzero(landmark_outliers(bad, valid, 6, default)).tolist() == planted
    # a smoothing window of 0 still judges by the frames around each one (+-MIN_JUMP_WINDOW)
    assert np.flatnonzero(landmark_outliers(onto_chin(head, [50]), np.ones(len(head), bool), 0, default)).tolist() \
        == [50]


@pytest.mark.slow
def test_a_planted_outlier_on_a_real_clip_is_interpolated_and_counted(clips, project, monkeypatch):
    """A CREMA-D clip through resample -> track -> align -> crop, one frame's landmarks moved onto the chin as
    they came out of the landmarker: that frame is interpolated (its stored landmarks back on the face), counted
    in the align record and in the shard manifest, and no other frame is taken for an outlier."""
    from pipeline import stages
    from pipeline.registry import add_corpus
    from preprocess.align import align_video, stage as align
    from preprocess.align.align_video import load_aligned
    from preprocess.crop.pack import shard_dir

    copy_clip(clips.cremad[0], project / "raw")
    add_corpus("c", "raw", pattern="*.flv", role="eval", label="real")
    for name in ("resample", "track"):
        assert [r.status for r in stages.run(name, "c")] == ["ok"]

    planted = {}
    decode = align_video.decode_tracked

    def planting(video, frames, boxes, params, landmarker, previous=None):
        landmarks, scores = decode(video, frames, boxes, params, landmarker, previous)
        k = len(frames) // 2
        planted.update(frame=int(frames[k]), clean=landmarks[k].astype(np.float64))
        landmarks[k] = onto_chin(landmarks, [k])[k]
        return landmarks, scores

    monkeypatch.setattr(align_video, "decode_tracked", planting)
    [record] = stages.run("align", "c")
    assert record.status == "ok" and record.details["outlier_frames"] == 1, record
    arrays, meta = load_aligned(align.output_path("c", record.video_id))
    row = int(np.flatnonzero(arrays["frame"] == planted["frame"])[0])
    assert arrays["interpolated"][row]
    assert record.details["interpolated_fraction"] == pytest.approx(arrays["interpolated"].mean(), abs=1e-6)
    clean, stored = planted["clean"], arrays["landmarks"][row].astype(np.float64)
    width = np.linalg.norm(clean[54] - clean[48])
    moved = np.linalg.norm(clean[8] - clean[MOUTH].mean(0))  # how far the plant put the mouth
    assert moved > 0.5 * width
    assert np.linalg.norm(stored[MOUTH].mean(0) - clean[MOUTH].mean(0)) < 0.15 * width  # back on the mouth
    assert sum(p["outlier_frames"] for p in meta["pieces"]) == 1

    assert [r.status for r in stages.run("crop", "c")] == ["ok"]
    manifest = pd.read_parquet(shard_dir("c") / "manifest.parquet")
    assert manifest.outlier_frames.tolist() == [1]
    assert manifest.interpolated_fraction.iloc[0] >= round(1 / manifest.n_frames.iloc[0], 6)
