"""Converting only a region of each decoded frame (media.frame_region) gives, byte for byte, what converting the
whole frame and cutting the region gives: in the landmarks of align and in the crops, edges of the frame included."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import make_video

from preprocess.align.align_params import AlignParams
from preprocess.align.align_video import TrackedLandmarks, decode_tracked, track_predecessors
from preprocess.align.landmarks_dlib import DlibLandmarker
from preprocess.crop.render import render_mouths
from preprocess.media import frame_region, iter_video_frames, read_frames


def _regions(rng, width, height, n=40):
    """Random regions, many crossing or outside the frame's edges, a few a single pixel."""
    x0 = rng.integers(-40, width + 10, n)
    y0 = rng.integers(-40, height + 10, n)
    return [(int(a), int(b), int(a + rng.integers(1, 250)), int(b + rng.integers(1, 250))) for a, b in zip(x0, y0)]


@pytest.mark.parametrize("kind", ["grid", "yuv444p", "odd_size"])
def test_a_region_is_the_same_pixels_as_the_whole_frame_converted(kind, clips, tmp_path):
    if kind == "grid":
        video = clips.grid[0]
    else:  # a format with no chroma subsampling, and an odd frame size (no whole chroma block at its edge)
        pix = "yuv444p" if kind == "yuv444p" else "yuv420p"
        size = "160x120" if kind == "yuv444p" else "161x121"
        video = make_video(tmp_path / f"{kind}.mkv", seconds=0.4, size=size, audio_rate=None,
                           extra=["-pix_fmt", pix])
    rng = np.random.default_rng(0)
    checked = 0
    for index, frame in enumerate(iter_video_frames(video)):
        for fmt in ("gray", "rgb24"):
            whole = frame.to_ndarray(format=fmt)
            for region in _regions(rng, frame.width, frame.height):
                pixels, x0, y0 = frame_region(frame, region, fmt)
                want = whole[y0:y0 + pixels.shape[0], x0:x0 + pixels.shape[1]]
                assert pixels.shape == want.shape and np.array_equal(pixels, want), (kind, fmt, region)
                # the region asked for (clipped to the frame) is inside what came back
                assert x0 <= max(region[0], 0) and y0 <= max(region[1], 0)
                assert x0 + pixels.shape[1] >= min(region[2], frame.width)
                checked += 1
        if index == 4:
            break
    assert checked == 5 * 2 * 40


@pytest.mark.parametrize("case", ["edge", "shrunk", "two_tracks"])
def test_align_landmarks_are_those_of_the_whole_frames(clips, case):
    """Regions cut around the boxes give the landmarks of the whole frames: boxes over the frame's corner, tracker
    boxes about half the face's size (a chained frame then reads around its own start box, outside the
    tracker's region), and two tracks over the same frames (each row chained to its own track's)."""
    import dlib

    video = clips.grid[0]
    gray = read_frames(video, gray=True)
    [face] = dlib.get_frontal_face_detector()(gray[0], 1)
    box = np.array([face.left(), face.top(), face.right(), face.bottom()], float)
    n = len(gray)
    boxes = np.repeat(box[None], n, 0)
    if case == "edge":
        boxes[50:60] += [-box[0] - 20, -box[1] - 15, -box[0] - 20, -box[1] - 15]  # over the top-left corner
    centre, half = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]) / 2
    small = np.r_[centre - 0.55 * half, centre + 0.55 * half]
    if case == "shrunk":
        boxes[20:40] = small
    frames, previous = np.arange(n), np.arange(-1, n - 1)
    if case == "two_tracks":  # rows sorted by (segment, frame): the face's track, then one on a smaller box
        frames, boxes = np.r_[frames, frames], np.r_[boxes, np.repeat(small[None], n, 0)]
        previous = track_predecessors(np.repeat([0, 1], n), frames)
    params = AlignParams(batch_size=32)
    landmarker = DlibLandmarker(refine=True)
    got, _ = decode_tracked(video, frames, boxes + 0.5, params, landmarker, previous)
    whole = TrackedLandmarks(landmarker, boxes + 0.5, previous)
    whole.add_frames(gray, frames)
    assert np.array_equal(got, whole.landmarks)


def test_crops_at_the_frame_edges_are_those_of_the_whole_frames(clips):
    import cv2

    video = clips.grid[0]
    frames = read_frames(video)
    height, width = frames.shape[1:3]
    listed = np.arange(0, 75, 5)
    centres = [(-30, -30), (width + 40, height / 2), (width / 2, height + 60), (width - 5, 3), (180, 150)] * 3
    transforms = np.array([[[1.3, 0.2, 47.5 - 1.3 * cx - 0.2 * cy], [-0.2, 1.3, 47.5 + 0.2 * cx - 1.3 * cy]]
                           for cx, cy in centres])
    for color in (False, True):
        crops = render_mouths(video, listed, transforms, color)
        for crop, f, m in zip(crops, listed, transforms):
            frame = frames[f] if color else cv2.cvtColor(frames[f], cv2.COLOR_RGB2GRAY)
            want = cv2.warpAffine(frame, m, (96, 96), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            assert np.array_equal(crop, want)
