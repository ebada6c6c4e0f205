"""render_mouths: the 96x96 mouths warped from the full frames of a GRID clip, the frame transform hook, errors."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from preprocess.crop.render import iter_mouths, render_mouths
from preprocess.media import read_frames


@pytest.fixture(scope="module")
def clip(clips):
    """A GRID clip (25 fps, 75 frames, 360x288), its RGB frames, and per-frame transforms zooming x1.5 on a
    drifting point (a stand-in for the align stage's frame -> crop transforms)."""
    video = clips.grid[0]
    frames = read_frames(video)
    listed = np.array([3, 4, 5, 20, 21, 40, 74])
    tf = np.zeros((len(listed), 2, 3))
    for i, f in enumerate(listed):
        cx, cy = 180 + f * 0.3, 190 - f * 0.2
        tf[i] = [[1.5, 0.1, 47.5 - 1.5 * cx - 0.1 * cy], [-0.1, 1.5, 47.5 + 0.1 * cx - 1.5 * cy]]
    return video, frames, listed, tf


def test_crops_are_the_warped_gray_frames(clip):
    video, frames, listed, tf = clip
    crops = render_mouths(video, listed, tf, color=False)
    assert crops.shape == (len(listed), 96, 96) and crops.dtype == np.uint8
    for crop, f, m in zip(crops, listed, tf):
        want = cv2.warpAffine(cv2.cvtColor(frames[f], cv2.COLOR_RGB2GRAY), m, (96, 96), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        assert np.array_equal(crop, want)
    colour = render_mouths(video, listed, tf, color=True)
    assert colour.shape == (len(listed), 96, 96, 3)
    assert np.abs(colour.astype(float) @ [0.299, 0.587, 0.114] - crops).mean() < 1.0
    assert crops.std() > 10  # a picture, not a border


def test_identity_transform_is_the_clean_path_and_a_transform_sees_every_frame_in_order(clip):
    video, _, listed, tf = clip
    clean = render_mouths(video, listed, tf, color=False)
    seen = []

    def identity(batch, first):
        seen.append((first, len(batch)))
        return batch
    assert render_mouths(video, listed, tf, False, identity).tobytes() == clean.tobytes()
    starts = [first for first, _ in seen]
    assert starts[0] == 0 and all(b == a + n for (a, n), b in zip(seen, starts[1:]))  # gap-free, in order
    assert seen[-1][0] + seen[-1][1] == 75  # up to the last listed frame (74)
    inverted = render_mouths(video, listed, tf, False, lambda batch, first: 255 - batch)
    assert np.abs(inverted.astype(int) - (255 - clean.astype(int))).max() <= 1  # applied before the warp
    # the same frames listed in another order give the same crops, in that order, from one decode
    order = np.array([6, 0, 3, 1, 5, 2, 4])
    assert np.array_equal(render_mouths(video, listed[order], tf[order], False), clean[order])
    pieces = list(iter_mouths(video, listed, tf, False, batch=8))
    assert np.array_equal(np.concatenate([c for _, c in pieces]), clean) and len(pieces) > 2


def test_plain_errors(clip):
    video, _, listed, tf = clip
    with pytest.raises(ValueError, match="has only 75 frames"):
        render_mouths(video, np.array([10, 80]), tf[:2], False)
    with pytest.raises(ValueError, match="must keep both"):
        render_mouths(video, listed, tf, False, lambda batch, first: batch[:, ::2])
    with pytest.raises(ValueError, match="must keep both"):
        render_mouths(video, listed, tf, False, lambda batch, first: batch.astype(np.float32))
    with pytest.raises(ValueError, match=r"\(T, 2, 3\)"):
        render_mouths(video, listed, tf[:3], False)
    with pytest.raises(ValueError, match="sorted"):
        list(iter_mouths(video, listed[::-1], tf, False))
