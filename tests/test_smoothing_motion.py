"""align: landmark smoothing that follows a moving head (align.smoothing: follow) and keeps a still one steady."""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from preprocess.align.align_params import AlignParams
from preprocess.align.geometry import ALIGN_POINTS, TEMPLATE
from preprocess.align.align_video import piece_transforms
from preprocess.align.smoothing import follow_motion, local_quadratic, moving_average, smooth_landmarks

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_centring import (centre_steps, landmarks_of, mouth_offsets,  # noqa: E402
                            pan_frames, pan_path)

FACE_SCALE = 1.5  # canonical (crop) px per frame px, about a GRID face


def face(seed: int = 0) -> np.ndarray:
    """(68, 2) a fixed face in frame px: the canonical template's anchor points, the rest random around them."""
    rng = np.random.default_rng(seed)
    pts = rng.normal(128, 30, (68, 2))
    pts[list(ALIGN_POINTS)] = TEMPLATE
    return pts / FACE_SCALE


def moved(path: np.ndarray, seed: int = 0) -> np.ndarray:
    return face(seed)[None] + path[:, None, :]


def test_constant_input_is_unchanged():
    still = moved(np.zeros((40, 2)))
    for out in (follow_motion(still, 6, 1.5), local_quadratic(still, 6), smooth_landmarks(still, "follow", 6, 1.5)):
        assert np.allclose(out, still, atol=1e-9)


def test_short_pieces_and_ends():
    for n in (1, 2, 3, 5, 12):
        pts = moved(np.cumsum(np.full((n, 2), 3.0), axis=0))
        out = follow_motion(pts, 6, 1.5)
        assert out.shape == pts.shape and np.isfinite(out).all()
        assert np.allclose(out[[0, -1]], pts[[0, -1]])  # the window shrinks to the raw value at the ends
    assert np.allclose(local_quadratic(np.arange(9.0) ** 2, 6), np.arange(9.0) ** 2)  # exact on a parabola


def test_a_ramp_is_followed_from_rest_and_through_a_turn():
    # At rest for 30 frames, then 3 px/frame, turning back at frame 64 (speed changes spread over 8 frames, as
    # pan_path's): the moving average lags over 4 px (6.3) at the start and the turn; the follow filter stays
    # within 1.5 px (1.0: the quadratic fit misses a little of each sharp bend).
    t = np.arange(100)
    velocity = np.where(t < 30, 0.0, np.where(t < 64, 3.0, -3.0))
    window = np.hanning(10)[1:-1]
    path = np.zeros((100, 2))
    path[:, 0] = np.cumsum(np.convolve(velocity, window / window.sum(), mode="same"))
    pts = moved(path)
    lag_ma = np.abs(moving_average(pts, 6) - pts).max()
    lag_follow = np.abs(follow_motion(pts, 6, 1.5) - pts).max()
    assert lag_ma > 4.0
    assert lag_follow < min(1.5, lag_ma / 4), (lag_ma, lag_follow)
    ramp = moved(np.stack([np.arange(50) * 3.0, np.arange(50) * -1.0], axis=1))
    assert np.allclose(follow_motion(ramp, 6, 1.5), ramp, atol=1e-9)  # constant speed: no lag at all


def test_noise_on_a_still_face_is_reduced_as_by_the_moving_average():
    rng = np.random.default_rng(1)
    still = moved(np.zeros((200, 2)))
    noisy = still + rng.normal(0, 1.0, still.shape)
    rms = {name: np.sqrt(((f(noisy, 6) - still)[6:-6] ** 2).mean())
           for name, f in (("ma", moving_average), ("follow", lambda p, h: follow_motion(p, h, 1.5)))}
    assert rms["ma"] < 0.35  # 1 / sqrt(13) = 0.28
    assert rms["follow"] <= rms["ma"] * 1.02, rms
    again = follow_motion(noisy, 6, 1.5)
    assert again.tobytes() == follow_motion(noisy.copy(), 6, 1.5).tobytes()  # deterministic


def test_params_name_the_smoothing():
    assert AlignParams().smoothing == "follow"
    with pytest.raises(ValueError, match="align.smoothing 'median' is not one of follow, moving_average"):
        AlignParams(smoothing="median")
    with pytest.raises(ValueError, match="follow_speed"):
        AlignParams(follow_speed=-1.0)


def test_a_panned_real_clip_keeps_the_mouth_centred(testdata):
    """The issue's check: a real GRID clip panned along a known path (3.5 px/frame across, 2 down, direction
    changes): the mouth stays within 4 crop px of the crop centre on every frame (the moving average: 9 px), and
    on the still clip the crop centre moves frame to frame no more than under the moving average."""
    from preprocess.media import read_frames

    # a real GRID clip: a still camera and a GRID-sized face (the demo heads sway by themselves, and their
    # larger faces turn the same pan into less lag in crop px)
    frames = read_frames(testdata / "grid" / "bbaf2n.mpg", gray=True)[:75]
    path = pan_path(len(frames))
    assert np.abs(np.diff(path, axis=0)).max() <= 3.5 + 1e-9 and len(frames) == 75
    still, moving = landmarks_of(frames), landmarks_of(pan_frames(frames, path))
    assert np.isfinite(moving.reference).all() and np.isfinite(still.reference).all()  # a face on every frame

    p = AlignParams()  # the shipped window and follow_speed

    def transforms(lms, method):
        return piece_transforms(lms.aligned, replace(p, smoothing=method))[1]  # the align stage's own code

    worst = {m: mouth_offsets(transforms(moving, m), moving.reference).max()
             for m in ("moving_average", "follow")}
    assert worst["moving_average"] > 6.0, worst  # the clip does exercise the lag
    assert worst["follow"] < 4.0, worst

    def jitter(lms, known, method):
        return np.sqrt(np.mean(centre_steps(transforms(lms, method), known) ** 2))

    still_jitter = {m: jitter(still, None, m) for m in ("moving_average", "follow")}
    assert still_jitter["follow"] <= still_jitter["moving_average"] * 1.05 + 0.01, still_jitter
    assert jitter(moving, path, "follow") < jitter(moving, path, "moving_average")
