"""track: the pure parts (IoU linking, gaps, cuts, smoothing, offsets, the speaker rule, weights lookup)."""
from __future__ import annotations

import numpy as np
import pytest

from preprocess.track.track_params import TrackParams
from preprocess.track.sync import (
    AV_ENERGY,
    LARGEST_FACE,
    SINGLE_FACE,
    SYNCNET,
    SyncParams,
    SyncScore,
    audio_shift_frames,
    choose_speakers,
    lagged_correlation,
    offset_search,
)
from preprocess.track.tracking import TrackingParams, build_tracks, iou_matrix, smooth_boxes
from preprocess.weights import resolve_weights

FACE = np.array([100, 100, 200, 220, 0.99], np.float32)


def moving(n: int, start=FACE, step=(1.0, 0.5)) -> dict[int, np.ndarray]:
    """One face drifting slowly: a detection per frame."""
    shift = np.array([step[0], step[1], step[0], step[1], 0], np.float32)
    return {f: (start + f * shift)[None] for f in range(n)}


def test_iou_matrix_known_values():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    np.testing.assert_allclose(iou_matrix(a, b)[0], [1.0, 50 / 150, 0.0])


def test_two_faces_give_two_tracks_linked_by_overlap():
    other = FACE + np.array([200, 0, 200, 0, 0], np.float32)
    dets = {f: np.stack([FACE + [f, 0, f, 0, 0], other - [f, 0, f, 0, 0]]) for f in range(40)}
    tracks = build_tracks(dets, [], 1, TrackingParams())
    assert len(tracks) == 2
    left, right = sorted(tracks, key=lambda t: t.boxes[0, 0])
    assert left.boxes[-1, 0] == pytest.approx(139, abs=1) and right.boxes[-1, 0] == pytest.approx(261, abs=1)
    assert all(t.detected.all() and (t.start, t.end) == (0, 40) for t in tracks)


def test_gaps_bridge_within_max_gap_and_split_beyond():
    dets = moving(80)
    for f in range(30, 50):  # face gone for 20 frames
        dets[f] = np.zeros((0, 5), np.float32)
    bridged = build_tracks(dets, [], 1, TrackingParams(max_gap=25))
    assert [(t.start, t.end) for t in bridged] == [(0, 80)]
    assert not bridged[0].detected[30:50].any() and np.isnan(bridged[0].scores[30:50]).all()
    assert bridged[0].detected[:30].all() and bridged[0].detected[50:].all()
    split = build_tracks(dets, [], 1, TrackingParams(max_gap=10))
    assert [(t.start, t.end) for t in split] == [(0, 30), (50, 80)]
    unbridged = build_tracks(dets, [], 1, TrackingParams(max_gap=25, bridge_gaps=False))
    assert [(t.start, t.end) for t in unbridged] == [(0, 30), (50, 80)]


def test_shot_cut_splits_a_track_even_when_boxes_overlap():
    tracks = build_tracks(moving(80), [40], 1, TrackingParams())
    assert [(t.start, t.end, t.shot) for t in tracks] == [(0, 40, 0), (40, 80, 1)]


def test_a_far_detection_starts_a_new_track_instead_of_jumping():
    dets = moving(60)
    dets[30] = np.array([[300, 20, 340, 70, 0.9]], np.float32)  # something else, far away, one frame
    tracks = build_tracks(dets, [], 1, TrackingParams(min_face_size=0, min_track_frames=1))
    main = max(tracks, key=lambda t: len(t.boxes))
    assert (main.start, main.end) == (0, 60) and not main.detected[30]
    assert main.boxes[30, 0] < 200  # filled from the face's own neighbours, not from the other box


def test_small_faces_and_short_tracks_are_dropped():
    small = {f: np.array([[10, 10, 40, 40, 0.9]], np.float32) for f in range(60)}
    assert build_tracks(small, [], 1, TrackingParams(min_face_size=64)) == []
    assert build_tracks(moving(20), [], 1, TrackingParams(min_track_frames=25)) == []


def test_stride_interpolates_between_detections():
    every = moving(41)
    strided = {f: d for f, d in every.items() if f % 4 == 0}
    track = build_tracks(strided, [], 4, TrackingParams(smooth_frames=1))[0]
    assert (track.start, track.end) == (0, 41)
    np.testing.assert_allclose(track.boxes, np.concatenate([every[f][:, :4] for f in range(41)]), atol=1e-4)
    assert track.detected.sum() == 11 and np.isnan(track.scores[1])


def test_with_a_stride_tracks_reach_the_shot_cut():
    every = moving(80)
    strided = {f: d for f, d in every.items() if f % 3 == 0 or f == 79}
    tracks = build_tracks(strided, [40], 3, TrackingParams())
    assert [(t.start, t.end) for t in tracks] == [(0, 40), (40, 80)]  # detections at 39 and 42
    assert not tracks[1].detected[:2].any()


def test_smoothing_removes_a_single_frame_outlier():
    boxes = np.tile(FACE[:4], (21, 1))
    boxes[10] += 40
    out = smooth_boxes(boxes, 7)
    np.testing.assert_allclose(out[10], FACE[:4], atol=1e-4)


def test_lagged_correlation_finds_the_lag():
    rng = np.random.default_rng(0)
    audio = rng.normal(size=200)
    visual = np.roll(audio, -2) + 0.1 * rng.normal(size=200)  # visual[t] ~ audio[t + 2]
    corr, lag = lagged_correlation(visual, audio, 3)
    assert lag == 2 and corr > 0.9


@pytest.mark.parametrize("shift", [-15, -7, -1, 0, 3, 11, 15])
def test_offset_search_returns_a_known_shift_exactly(shift):
    """Embedding sequences built with a known shift: video[t] matches audio[t + shift]."""
    rng = np.random.default_rng(abs(shift))
    n, dim = 120, 64
    audio = rng.normal(size=(n + 40, dim))
    video = np.stack([audio[t + shift] if 0 <= t + shift < len(audio) else rng.normal(size=dim)
                      for t in range(n)]) + 0.05 * rng.normal(size=(n, dim))
    offset, confidence, dists = offset_search(video, audio[:n], vshift=15)
    assert offset == -shift  # syncnet_python's sign: offset = vshift - argmin
    assert confidence > 1.0 and len(dists) == 31
    assert audio_shift_frames(SyncScore(SYNCNET, confidence, offset), SyncParams(syncnet_min_confidence=1.0)) \
        == shift  # aligned_audio[t] = audio[t + shift] puts the matching audio under each frame


def test_audio_is_shifted_only_by_a_confident_trained_model():
    p = SyncParams(syncnet_min_confidence=3.0)
    assert audio_shift_frames(SyncScore(SYNCNET, 5.0, 4), p) == -4
    assert audio_shift_frames(SyncScore(SYNCNET, 2.0, 4), p) == 0
    assert audio_shift_frames(SyncScore(AV_ENERGY, 0.9, None), p) == 0


def test_speaker_rule():
    p = SyncParams()
    spans = [(0, 75), (0, 75)]
    listener = choose_speakers(spans, [100, 100], [SyncScore(AV_ENERGY, 0.1, None),
                                                   SyncScore(AV_ENERGY, 0.6, None)], p)
    assert [(c.index, c.method, c.ambiguous) for c in listener] == [(1, AV_ENERGY, False)]
    assert listener[0].confidence == pytest.approx(0.5) and listener[0].offset is None
    talkers = choose_speakers(spans, [100, 100], [SyncScore(AV_ENERGY, 0.6, None),
                                                  SyncScore(AV_ENERGY, 0.5, None)], p)
    assert [(c.index, c.ambiguous) for c in talkers] == [(0, True)] and talkers[0].confidence < 0.15
    silent = choose_speakers(spans, [80, 120], None, p)
    assert [(c.index, c.method, c.ambiguous) for c in silent] == [(1, LARGEST_FACE, True)]
    one_after_another = choose_speakers([(0, 40), (60, 100)], [100, 100], None, p)
    assert [(c.index, c.method, c.ambiguous) for c in one_after_another] == [(0, SINGLE_FACE, False),
                                                                             (1, SINGLE_FACE, False)]
    syncnet = choose_speakers(spans, [100, 100], [SyncScore(SYNCNET, 2.0, 1), SyncScore(SYNCNET, 8.0, -2)], p)
    assert [(c.index, c.method, c.ambiguous, c.offset) for c in syncnet] == [(1, SYNCNET, False, -2)]


def test_params_reject_unknown_keys():
    from preprocess.settings import section
    from preprocess.resample.convert import ResampleParams

    assert section({}, "track", TrackParams) == TrackParams()
    assert section({"track": {"detect_stride": 1}}, "track", TrackParams).detect_stride == 1
    with pytest.raises(ValueError, match="unknown key.*detect_strid"):
        section({"track": {"detect_strid": 1}}, "track", TrackParams)
    # a typo in a nested step section names its whole path
    with pytest.raises(ValueError, match=r"params.yaml track\.tracking: unknown key\(s\) iou_treshold"):
        section({"track": {"tracking": {"iou_treshold": 0.4}}}, "track", TrackParams)
    assert section({"track": {"tracking": {"iou_threshold": 0.4}}}, "track", TrackParams).tracking.iou_threshold == 0.4
    # a field the caller fixes cannot be set from params.yaml
    with pytest.raises(ValueError, match="require_audio"):
        section({"resample": {"require_audio": False}}, "resample", ResampleParams, require_audio=True)


def test_missing_weights_name_the_file_and_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(FileNotFoundError) as err:
        resolve_weights(None, "retinaface_mobilenet0.25.pth", None, "RetinaFace weights", "retinaface")
    message = str(err.value)
    assert "retinaface_mobilenet0.25.pth" in message and str(tmp_path / "torch" / "hub" / "checkpoints") in message
    with pytest.raises(FileNotFoundError, match="weights.retinaface"):
        resolve_weights(str(tmp_path / "nope.pth"), "retinaface_mobilenet0.25.pth", None, "RetinaFace", "retinaface")
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "retinaface_mobilenet0.25.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    assert resolve_weights(None, "retinaface_mobilenet0.25.pth", None) == cached


def test_box_filters_are_scipys_bit_for_bit():
    # tracking.py writes them out to spare the track stage scipy.ndimage's import
    from scipy.ndimage import median_filter, uniform_filter1d

    from preprocess.track.tracking import mean3_rows, median_rows

    rng = np.random.default_rng(7)
    for trial in range(300):
        n, k = int(rng.integers(3, 200)), int(rng.integers(1, 12))
        k = min(k, n)
        x = (rng.normal(size=(n, 4)) * rng.choice([0.5, 20, 300]) + 200).astype(np.float32).astype(np.float64)
        if trial % 2:
            x = np.round(x)  # ties, as boxes from a still face have
        assert np.array_equal(median_rows(x, k), median_filter(x, size=(k, 1), mode="nearest")), (n, k)
        assert np.array_equal(mean3_rows(x), uniform_filter1d(x, size=3, axis=0, mode="nearest")), n
