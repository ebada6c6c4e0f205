"""Corruptions for the robustness evaluation (preprocess/corrupt.py) on the frames of a GRID clip."""
from __future__ import annotations

import numpy as np
import pytest

from preprocess.corrupt import (TYPES, Corruption, CorruptionError, CorruptionLevels, RobustnessParams, apply,
                                block_positions, compress_video, video_seed)

# Measured on the six GRID clips (25 frames each): level 5 lies between 24.4 dB (block-wise) and 31.9 dB
# (compression); level 1 between 31.1 and 36.0 dB. The demo clips' smoother close-ups: jpeg level 1 at 39.0 dB.
LEVEL5_MAX_PSNR = 34.0
LEVEL1_MAX_PSNR = 40.0


@pytest.fixture(scope="module")
def frames(clips):
    from preprocess.media import iter_frame_batches

    return next(iter_frame_batches(clips.grid[0], batch=25))  # (25, 288, 360, 3) RGB


def psnr(clean: np.ndarray, other: np.ndarray) -> float:
    mse = np.mean((clean.astype(np.float64) - other.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / mse)) if mse else float("inf")


FRAME_TYPES = tuple(t for t in TYPES if t != "compression")  # compression re-encodes the file instead


@pytest.mark.parametrize("type_", FRAME_TYPES)
def test_psnr_falls_with_every_level(frames, type_):
    before = frames.copy()
    scores = []
    for level in range(1, 6):
        out = apply(frames, Corruption(type_, level), seed=0)
        assert out.shape == frames.shape and out.dtype == np.uint8
        scores.append(psnr(frames, out))
    assert np.array_equal(frames, before), "the input frames were modified"
    assert all(b < a for a, b in zip(scores, scores[1:])), f"{type_}: PSNR not falling with level: {scores}"
    assert scores[0] < LEVEL1_MAX_PSNR, f"{type_} level 1 barely changes the frames: {scores[0]:.1f} dB"
    assert scores[-1] < LEVEL5_MAX_PSNR, f"{type_} level 5: {scores[-1]:.1f} dB"


@pytest.mark.parametrize("type_", TYPES)
def test_level_zero_is_the_clean_input(frames, type_):
    level0 = Corruption.parse(f"{type_}:0")
    assert apply(frames, level0, seed=3) is frames
    batches = [frames[:10], frames[10:]]
    assert all(a is b for a, b in zip(apply(iter(batches), level0), batches))


@pytest.mark.parametrize("type_", FRAME_TYPES)
def test_batches_give_the_frames_of_the_whole_array(frames, type_):
    corruption = Corruption(type_, 3)
    whole = apply(frames, corruption, seed=7)
    parts = list(apply(iter([frames[:7], frames[7:20], frames[20:]]), corruption, seed=7))
    assert [len(p) for p in parts] == [7, 13, 5]
    assert np.array_equal(np.concatenate(parts), whole)


def test_blockwise_is_seeded_per_frame(frames):
    corruption = Corruption("blockwise", 3)
    first = apply(frames, corruption, seed=1)
    assert np.array_equal(first, apply(frames, corruption, seed=1))
    assert not np.array_equal(first, apply(frames, corruption, seed=2))
    # a video corrupted from frame 10 on gets the blocks it gets in one go
    assert np.array_equal(apply(frames[10:], corruption, seed=1, start=10), first[10:])
    changed = first != frames
    assert not np.array_equal(changed[0], changed[1]), "consecutive frames got blocks at the same places"
    assert video_seed(0, "a") != video_seed(0, "b") and video_seed(0, "a") == video_seed(0, "a")


def test_blockwise_levels_nest_and_scale_with_the_frame():
    low = block_positions(288, 360, 16, seed=4, frame_index=9)
    high = block_positions(288, 360, 80, seed=4, frame_index=9)
    assert len(low) == 16 and len(high) == 80 and np.array_equal(high[:16], low)
    assert len(block_positions(600, 800, 16, 0, 0)) == 32  # x2 per 256 px of the shorter side
    assert len(block_positions(255, 640, 80, 0, 0)) == 0  # DeeperForensics: none below 256 px
    assert ((high >= 0) & (high <= [288 - 8, 360 - 8])).all()


def test_compression_re_encodes_the_file_and_psnr_falls_with_every_level(clips):
    """The path the robustness stage ships: the resampled file through x264 at each level's CRF."""
    from preprocess.media import read_frames

    clip = clips.grid[0]
    clean = read_frames(clip)[:25]
    levels = CorruptionLevels()
    scores = []
    for level in range(1, 6):
        out = next(compress_video(clip, levels.parameter(Corruption("compression", level)), batch=25))
        assert out.shape == clean.shape and out.dtype == np.uint8
        scores.append(psnr(clean, out))
    assert all(b < a for a, b in zip(scores, scores[1:])), f"compression: PSNR not falling with level: {scores}"
    assert scores[0] < LEVEL1_MAX_PSNR and scores[-1] < LEVEL5_MAX_PSNR, scores
    again = next(compress_video(clip, levels.parameter(Corruption("compression", 5)), batch=25))
    assert psnr(clean, again) == scores[-1]  # deterministic: one thread, bit-exact flags, the pinned ffmpeg


def test_compression_is_not_a_frame_corruption(frames):
    with pytest.raises(CorruptionError, match="re-encodes the video file"):
        apply(frames, Corruption("compression", 1))


def test_compressing_the_video_file(clips):
    from preprocess.media import read_frames

    clip = clips.grid[0]
    clean = read_frames(clip)
    out = np.concatenate(list(compress_video(clip, 40, batch=32)))
    assert out.shape == clean.shape and psnr(clean, out) < LEVEL5_MAX_PSNR
    assert np.array_equal(out, np.concatenate(list(compress_video(clip, 40))))


@pytest.mark.parametrize("text, words", [
    ("blur", "TYPE:LEVEL"), ("blur:x", "not a whole number"), ("fog:1", "unknown corruption type 'fog'"),
    ("blur:6", "levels 0 (none) to 5"), ("jpeg:-1", "levels 0 (none) to 5"), (":2", "TYPE:LEVEL"),
])
def test_bad_specs_are_plain_errors(text, words):
    with pytest.raises(CorruptionError) as err:
        Corruption.parse(text)
    assert words in str(err.value) and "Traceback" not in str(err.value)


def test_specs_and_params():
    assert Corruption.parse(" GB:2 ") == Corruption("blur", 2)
    assert str(Corruption.parse("compression:5")) == "compression:5"
    params = RobustnessParams(types=["blur", "jpeg"], levels={"blur": [3, 5]})
    assert params.levels.blur == (3, 5) and params.levels.jpeg == (2, 3, 4, 5, 6)
    assert [str(c) for c in params.corruptions()] == ["blur:1", "blur:2"] + [f"jpeg:{n}" for n in range(1, 6)]
    assert CorruptionLevels().parameter(Corruption("compression", 5)) == 40
    for bad, words in [({"levels": {"blur": [8]}}, "odd kernel side"), ({"levels": {"jpeg": [3, 2]}}, "increase"),
                       ({"levels": {"fog": [1]}}, "unknown type"), ({"types": ["fog"]}, "distinct types"),
                       ({"compression_preset": "quick"}, "not an x264 preset"), ({"seed": -1}, "seed")]:
        with pytest.raises(CorruptionError) as err:
            RobustnessParams(**bad)
        assert words in str(err.value)


def test_params_yaml_section_parses():
    from pathlib import Path

    from preprocess.settings import load_yaml, section

    params = load_yaml(Path(__file__).resolve().parents[1] / "params.yaml")
    robustness = section(params, "robustness", RobustnessParams)
    assert robustness.corruptions() and not robustness.keep_crops
    assert robustness.levels.blur == (7, 9, 13, 17, 21)
    with pytest.raises(ValueError, match="unknown key"):
        section({"robustness": {"sed": 1}}, "robustness", RobustnessParams)
    with pytest.raises(ValueError, match=r"robustness\.levels: unknown key\(s\) blurr"):
        section({"robustness": {"levels": {"blurr": [3]}}}, "robustness", RobustnessParams)
