"""Memory stays bounded for long videos: track keeps per-frame pictures on disk, align keeps none, and the crop
stage's renderer holds one decode batch, not the video.

The mechanism is checked, not a wall-clock or RSS figure: the peak of traced allocations (numpy reports its
buffers to tracemalloc) must not grow with the video's length by anything like a picture per frame. The same
GRID clip is looped to a short and a three times longer video; the per-frame numbers the steps do keep
(boxes, landmarks, transforms) are a few hundred bytes to 2 kB a frame, the pictures 46 kB (track's small
gray frames), 9 kB (a mouth crop) and 311 kB (a full 360x288 RGB frame).
"""
from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from preprocess.align.align_params import AlignParams
from preprocess.align.npz import save_npz
from preprocess.ffmpeg import run_ffmpeg
from preprocess.framestore import frame_store
from preprocess.media import read_audio, read_frames
from preprocess.resample.convert import ResampleParams, resample_video
from preprocess.track.motion import audio_envelope, motion_energy, mouth_patches, streamed_motion_energy, wav_envelope

SHORT, LONG = 6, 18  # seconds of looped clip
GROWTH_PER_FRAME = 4096  # bytes: far below one picture a frame, above the per-frame numbers the steps keep


def looped(clip: Path, seconds: int, folder: Path) -> tuple[Path, Path]:
    src, video, audio = folder / f"loop{seconds}.mkv", folder / f"v{seconds}.mkv", folder / f"a{seconds}.wav"
    run_ffmpeg(["-stream_loop", "-1", "-i", str(clip), "-t", str(seconds), "-c:v", "libx264", "-preset",
                "ultrafast", "-crf", "18", "-c:a", "pcm_s16le", str(src)])
    resample_video(src, video, audio, ResampleParams())
    return video, audio


@pytest.fixture(scope="module")
def looped_clips(clips, tmp_path_factory):
    folder = tmp_path_factory.mktemp("long")
    return {s: looped(clips.grid[0], s, folder) for s in (SHORT, LONG)}


def traced_peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_track_and_align_peak_allocations_do_not_grow_with_length(looped_clips, tmp_path):
    from preprocess.align.align_video import align_video, load_aligned, make_landmarker
    from preprocess.crop.render import iter_mouths
    from preprocess.track.detect import DlibHogDetector
    from preprocess.track.track_params import TrackParams
    from preprocess.track.track_video import track_video

    params = TrackParams()  # the default detector, dlib: what keeps frames is the same for every detector
    detector = DlibHogDetector(params.detect)
    align_params = AlignParams(backend="dlib")
    landmarker = make_landmarker(align_params)
    peaks, frames = {}, {}
    for seconds, (video, audio) in looped_clips.items():
        result = {}
        peaks["track", seconds] = traced_peak(lambda: result.update(
            r=track_video(video, audio, params, detector, scratch=tmp_path / "frames")))
        r = result["r"]
        frames[seconds] = r.details["frames"]
        out = tmp_path / f"{seconds}.npz"
        peaks["align", seconds] = traced_peak(lambda: align_video(
            video, r.boxes, r.segments, align_params, landmarker, out))
        arrays, _ = load_aligned(out, keys=("frame", "crop_transforms"))
        rendered = []

        def render():  # the crop stage's decode: every crop is made, none is kept here
            for _, crops in iter_mouths(video, arrays["frame"], arrays["crop_transforms"], False):
                rendered.append(len(crops))
        peaks["render", seconds] = traced_peak(render)
        assert sum(rendered) == len(arrays["frame"]) > 0.5 * frames[seconds]
    extra = frames[LONG] - frames[SHORT]
    assert extra >= 250
    for step in ("track", "align", "render"):
        growth = peaks[step, LONG] - peaks[step, SHORT]
        assert growth < GROWTH_PER_FRAME * extra, (step, growth / extra, peaks)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{LONG}.npz", f"{SHORT}.npz"]  # no scratch left


def test_frame_store_round_trip_and_scratch_always_removed(tmp_path):
    rows = np.random.default_rng(0).integers(0, 255, (10, 6, 4), np.uint8)
    with frame_store(tmp_path / "x.out") as store:
        store.append(rows[:4])
        store.put(7, rows[7:])
        store.put(4, rows[4:7])
        assert np.array_equal(store.read(0, 10), rows)
        assert np.array_equal(np.concatenate([r for _, r in store.runs(1, 10, 4)]), rows[1:])
        assert os.listdir(tmp_path) == []  # unlinked while open: nothing to leave behind if killed
    with pytest.raises(RuntimeError), frame_store(tmp_path / "y.out", (2,)) as store:
        store.append(np.zeros((3, 2), np.uint8))
        raise RuntimeError("a failing step")
    assert os.listdir(tmp_path) == []


def test_streamed_signals_equal_the_whole_at_once(looped_clips):
    video, audio = looped_clips[SHORT]
    gray = read_frames(video, gray=True)[:300]
    boxes = np.tile(np.array([[100, 60, 200, 190]], np.float32), (len(gray), 1)) + np.arange(len(gray))[:, None] % 7
    whole = motion_energy(mouth_patches(gray, boxes, 0))
    for run in (2, 7, 256):
        runs = ((gray[i:i + run], boxes[i:i + run]) for i in range(0, len(gray), run))
        assert streamed_motion_energy(runs).tobytes() == whole.tobytes()
    assert wav_envelope(audio, chunk_frames=7).tobytes() == audio_envelope(read_audio(audio)).tobytes()


def test_npz_loads_like_savez_and_has_the_same_bytes_every_time(tmp_path):
    import time

    arrays = {"a": np.arange(12, dtype=np.int32), "big": np.random.default_rng(1).integers(0, 255, (9, 5, 3), np.uint8),
              "meta": np.array("{}")}
    np.savez(tmp_path / "ref.npz", **arrays)
    with open(tmp_path / "ours.npz", "wb") as f:
        save_npz(f, arrays)
    ref, ours = np.load(tmp_path / "ref.npz"), np.load(tmp_path / "ours.npz")
    assert ours.files == ref.files
    for k in ref.files:
        assert ours[k].dtype == ref[k].dtype and np.array_equal(ours[k], ref[k])
    time.sleep(2.1)  # zip timestamps have 2 s resolution: numpy.savez's would differ now
    with open(tmp_path / "again.npz", "wb") as f:
        save_npz(f, arrays)
    assert (tmp_path / "again.npz").read_bytes() == (tmp_path / "ours.npz").read_bytes()


def test_shard_npy_fast_path_matches_np_load():
    """The shard reader (shardformat.load_npy) views .npy members in place instead of np.load's copy: same
    arrays, and anything its header pattern does not cover still goes through np.load."""
    import io

    from preprocess.shardformat import load_npy as _load_npy
    from preprocess.shardformat import npy_bytes

    rng = np.random.default_rng(2)
    arrays = [rng.integers(0, 255, (5, 96, 96), np.uint8), rng.standard_normal((3, 640)).astype(np.float32),
              np.arange(6, dtype=">i2"), np.zeros((0, 68, 2), np.float32), np.array(3.5), np.array([True, False]),
              np.asfortranarray(rng.standard_normal((4, 3))), np.zeros(2, [("a", "<i4"), ("b", "<f8")])]
    for array in arrays:
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, array, allow_pickle=False)
        data = bytearray(buffer.getvalue())
        got = _load_npy(data)
        assert got.dtype == array.dtype and got.shape == array.shape and np.array_equal(got, array)
    video = _load_npy(bytearray(npy_bytes(arrays[0])))
    assert video.flags.writeable and not video.flags.owndata  # a view on the member's own buffer, no copy
