"""dlib landmarks chained along a track (align.backend dlib): each frame's box rebuilt from the landmarks of the frame
before it, restarted from the tracker's box where the chain cannot be trusted. On real GRID / CREMA-D frames."""
from __future__ import annotations

import dlib
import numpy as np
import pytest

from preprocess.align.align_video import TrackedLandmarks, track_predecessors
from preprocess.align.landmarks_dlib import DlibLandmarker, refined_box
from preprocess.media import read_frames


@pytest.fixture(scope="module")
def landmarker():
    return DlibLandmarker(refine=True)


def _hog_boxes(frames: np.ndarray) -> np.ndarray:
    detector = dlib.get_frontal_face_detector()
    boxes = []
    for frame in frames:
        [face] = detector(np.ascontiguousarray(frame), 0)
        boxes.append([face.left(), face.top(), face.right(), face.bottom()])
    return np.array(boxes, np.float64)


def _chained(landmarker, frames, boxes) -> np.ndarray:
    chain = TrackedLandmarks(landmarker, boxes, np.arange(-1, len(frames) - 1))
    chain.add_frames(frames, np.arange(len(frames)))
    return chain.landmarks


def _mouth_error(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return np.linalg.norm(points[:, 48:68].mean(1) - reference[:, 48:68].mean(1), axis=-1)


def test_predecessors_are_the_frame_before_in_the_same_segment():
    segment = np.array([0, 0, 0, 1, 1, 2, 2])
    frame = np.array([0, 1, 3, 1, 2, 7, 8])  # a gap inside segment 0: frame 3 has no predecessor
    assert track_predecessors(segment, frame).tolist() == [-1, 0, -1, -1, 3, -1, 5]
    assert track_predecessors(segment[:0], frame[:0]).tolist() == []


def test_misscaled_tracker_boxes_do_not_move_the_chained_landmarks(clips, landmarker):
    """The track stage detects on shrunk frames; there HOG's boxes can come out about 30% too large for a run of
    frames (a held-out CREMA-D clip). Chained frames take their box's size from the face, not the tracker."""
    for video in (clips.cremad[0], clips.grid[0]):
        frames = read_frames(video, gray=True)[:40]
        boxes = _hog_boxes(frames)
        reference = _chained(landmarker, frames, boxes)
        swollen = boxes.copy()
        centre, half = (boxes[:, :2] + boxes[:, 2:]) / 2, (boxes[:, 2:] - boxes[:, :2]) / 2
        swollen[10:30] = np.hstack([centre - 1.3 * half, centre + 1.3 * half])[10:30]
        landmarker.passes = 0
        assert _mouth_error(_chained(landmarker, frames, swollen), reference).max() < 1.0, video.name
        # and it is mostly the chain that reads them: restarting from the swollen boxes would be 2 passes a frame
        # (a few restarts remain where HOG's boxes step on its grid)
        assert landmarker.passes < 1.5 * len(frames), (video.name, landmarker.passes)


def test_a_chain_is_one_pass_a_frame_and_a_restart_two(clips):
    landmarker = DlibLandmarker(refine=True)
    frames = read_frames(clips.grid[0], gray=True)[:30]
    boxes = _hog_boxes(frames)
    _chained(landmarker, frames, boxes)
    # the first frame two passes, the rest one each but for a few restarts (HOG's boxes jump in steps of its grid)
    assert landmarker.passes <= 1.2 * len(frames)
    landmarker.passes = 0
    landmarker.predict(frames, boxes)  # no predecessors: every frame restarts
    assert landmarker.passes == 2 * len(frames)


def test_a_chain_that_left_the_face_restarts_from_the_tracker(clips, landmarker):
    frames = read_frames(clips.grid[0], gray=True)[:2]
    boxes = _hog_boxes(frames)
    restart = landmarker.predict(frames[1:], boxes[1:])[0]
    good = landmarker.predict(frames[:1], boxes[:1])[0][0]
    size = boxes[0, 2] - boxes[0, 0]
    # a face's width to the side: the chained box strays from the tracker's (no chained pass, the restart's two);
    # squashed to half its height: the chained pass does not rebuild its box (one pass, then the restart's two)
    for previous, passes in ((good + [size, 0.0], 2), (good * [1.0, 0.5] + [0.0, 0.5 * good[:, 1].mean()], 3)):
        landmarker.passes = 0
        got = landmarker.predict(frames[1:], boxes[1:], previous[None], boxes[:1])[0]
        assert np.array_equal(got, restart) and landmarker.passes == passes
    # a trustworthy predecessor is followed: one pass, from the box rebuilt from it
    landmarker.passes = 0
    got = landmarker.predict(frames[1:], boxes[1:], good[None], boxes[:1])[0]
    assert landmarker.passes == 1
    assert np.array_equal(got[0], landmarker._predict_one(np.ascontiguousarray(frames[1]), refined_box(good)
                                                          + np.tile((boxes[1, :2] + boxes[1, 2:] - boxes[0, :2]
                                                                     - boxes[0, 2:]) / 2, 2)))


def test_a_failed_predecessor_is_not_followed(clips, landmarker):
    """TrackedLandmarks hands the landmarker a predecessor only where its landmarks were found and fit its box."""
    frames = read_frames(clips.grid[0], gray=True)[:4]
    boxes = _hog_boxes(frames)
    given = []

    class FailingFirst:  # dlib, but the first frame's landmarks come back missing
        chained, wants_rgb = True, False

        def predict(self, frames, boxes, previous=None, previous_boxes=None):
            given.append(np.isfinite(previous).all(axis=(1, 2)).tolist())
            points = landmarker.predict(frames, boxes, previous, previous_boxes)[0]
            return (np.full_like(points, np.nan) if len(given) == 1 else points), None

    chain = TrackedLandmarks(FailingFirst(), boxes, np.arange(-1, 3))
    for i in range(4):
        chain.add([i], [frames[i]], [(0, 0)])
    assert given == [[False], [False], [True], [True]]  # frame 1 restarts: its predecessor has no landmarks
    assert np.array_equal(chain.landmarks[1], landmarker.predict(frames[1:2], boxes[1:2])[0][0])
