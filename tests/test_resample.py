"""resample: exact 25 fps and 640 samples a frame on the session's talking-face clips, and the right outcome for
every bad input."""
from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
from conftest import make_video

from preprocess.records import FAILED, SKIPPED, StageFailure
from preprocess.ffmpeg import run_ffmpeg
from preprocess.media import read_audio
from preprocess.probe import count_video_packets, frame_timestamps, is_constant_rate, probe
from preprocess.resample.convert import ResampleParams, resample_video

PRETRAIN = ResampleParams()
DETECTION = ResampleParams(require_audio=False)


def convert(src: Path, tmp_path: Path, params: ResampleParams = PRETRAIN) -> tuple[dict, Path, Path]:
    video, audio = tmp_path / "out" / f"{src.stem}.mkv", tmp_path / "out" / f"{src.stem}.wav"
    return resample_video(src, video, audio, params), video, audio


def assert_exact(details: dict, video: Path, audio: Path | None) -> None:
    n = details["n_frames"]
    times = frame_timestamps(video)
    assert len(times) == n == count_video_packets(video)
    assert is_constant_rate(times, 25.0)
    assert probe(video).fps == pytest.approx(25.0)
    if audio is not None:
        with wave.open(str(audio)) as wav:
            assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
            assert wav.getnframes() == n * 640 == details["audio_samples"]


@pytest.mark.parametrize("index", range(6))
def test_grid_clip_is_copied_not_reencoded(clips, index, tmp_path):
    details, video, audio = convert(clips.grid[index], tmp_path)
    assert details["video_copied"] and details["n_frames"] == 75
    assert_exact(details, video, audio)
    assert probe(video).video_codec == "mpeg1video"  # the source stream itself, no generation loss
    # AAC/MP2 decode to a few samples more or less than 3 s: trimmed or padded, and recorded
    assert abs(details["audio_padded"] - details["audio_trimmed"]) < 1000
    samples = read_audio(audio)
    assert np.abs(samples).max() > 0.05  # speech, not silence


@pytest.mark.parametrize("index", range(3))
def test_cremad_clip_not_at_25fps_becomes_exact_25fps(clips, index, tmp_path):
    details, video, audio = convert(clips.cremad[index], tmp_path)
    assert not details["video_copied"]
    expected = details["source_duration"] * 25
    assert abs(details["n_frames"] - expected) <= 1.5
    assert_exact(details, video, audio)


@pytest.mark.parametrize("fps", ["30", "30000/1001", "50", "24"])
def test_other_frame_rates(fps, tmp_path):
    src = make_video(tmp_path / f"src_{fps.replace('/', '_')}.mp4", seconds=2.0, fps=fps)
    details, video, audio = convert(src, tmp_path)
    assert details["n_frames"] == 50
    assert_exact(details, video, audio)


def test_variable_frame_rate_gives_exact_count(tmp_path):
    # 30 fps, then 10 fps from 0.5 s to 1.5 s, then 30 fps again: real variable timestamps
    src = make_video(tmp_path / "vfr.mkv", seconds=2.0, fps="30", extra=[
        "-vf", "select='lt(t,0.5)+gte(t,1.5)+not(mod(n,3))',setpts=PTS-STARTPTS", "-fps_mode", "vfr"])
    steps = np.diff(frame_timestamps(src))
    assert steps.max() > 2 * steps.min()  # really variable
    details, video, audio = convert(src, tmp_path)
    assert not details["video_copied"]
    assert details["n_frames"] == 50
    assert_exact(details, video, audio)


def test_25fps_variable_rate_is_not_copied(tmp_path):
    # nominal 25 fps but with a jump in the timestamps: must be re-timed, not copied
    src = make_video(tmp_path / "jump.mkv", seconds=2.0, fps="25", extra=[
        "-vf", "setpts='if(gte(N,25),PTS+0.2/TB,PTS)'", "-fps_mode", "vfr"])
    details, video, audio = convert(src, tmp_path)
    assert not details["video_copied"]
    assert_exact(details, video, audio)


def test_48k_stereo_and_mono_44k(tmp_path):
    for rate, channels in [(48000, 2), (44100, 1)]:
        src = make_video(tmp_path / f"a{rate}_{channels}.mp4", audio_rate=rate, channels=channels)
        details, video, audio = convert(src, tmp_path)
        assert_exact(details, video, audio)
        tone = read_audio(audio)
        spectrum = np.abs(np.fft.rfft(tone))
        assert np.fft.rfftfreq(len(tone), 1 / 16000)[spectrum.argmax()] == pytest.approx(440, abs=2)


def test_names_with_spaces_and_non_ascii(tmp_path):
    src = make_video(tmp_path / "ä clip with spaces.mp4")
    details, video, audio = convert(src, tmp_path)
    assert_exact(details, video, audio)


def test_video_only_file_skipped_for_pretraining_but_kept_for_detection(tmp_path):
    src = make_video(tmp_path / "silent.mp4", audio_rate=None)
    with pytest.raises(StageFailure, match="no audio track") as err:
        convert(src, tmp_path, PRETRAIN)
    assert err.value.status == SKIPPED
    details, video, audio = convert(src, tmp_path, DETECTION)
    assert not details["has_audio"] and "without audio" in details["note"] and not audio.exists()
    assert_exact(details, video, None)


def expect_failure(src: Path, tmp_path: Path, status: str, message: str, params=PRETRAIN) -> None:
    with pytest.raises(StageFailure, match=message) as err:
        convert(src, tmp_path, params)
    assert err.value.status == status
    assert not list((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True


def test_zero_byte_file(tmp_path):
    src = tmp_path / "empty.mp4"
    src.write_bytes(b"")
    expect_failure(src, tmp_path, FAILED, "empty file")


def test_text_file_named_mp4(tmp_path):
    src = tmp_path / "notes.mp4"
    src.write_text("this is not a video\n" * 50)
    expect_failure(src, tmp_path, FAILED, "not a readable video file")


def test_audio_only_file(tmp_path):
    src = tmp_path / "speech.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "sine=duration=2", "-c:a", "aac", str(src)])
    expect_failure(src, tmp_path, FAILED, "no video stream")


def test_truncated_file_without_index(tmp_path):
    src = make_video(tmp_path / "whole.mp4", seconds=4.0)  # index (moov) at the end
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    expect_failure(cut, tmp_path, FAILED, "not a readable video file|cannot open")


def test_truncated_file_with_index_first(tmp_path):
    src = make_video(tmp_path / "whole.mp4", seconds=4.0, extra=["-movflags", "+faststart"])
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    expect_failure(cut, tmp_path, FAILED, "truncated or damaged")


def test_tiny_resolution(tmp_path):
    src = make_video(tmp_path / "tiny.mp4", size="32x24")
    expect_failure(src, tmp_path, SKIPPED, "resolution 32x24 is below")


def test_shorter_than_one_clip(tmp_path):
    src = make_video(tmp_path / "short.mp4", seconds=0.6)
    expect_failure(src, tmp_path, SKIPPED, "too short: 15 frames")


def test_reencoding_is_deterministic(clips, tmp_path):
    clip = clips.cremad[0]
    _, video_a, audio_a = convert(clip, tmp_path / "a")
    _, video_b, audio_b = convert(clip, tmp_path / "b")
    assert video_a.read_bytes() == video_b.read_bytes()
    assert audio_a.read_bytes() == audio_b.read_bytes()


@pytest.mark.parametrize("size, rotate, want", [("160x120", None, (134, 100)), ("120x160", None, (100, 134)),
                                                ("160x120", 90, (100, 134)), ("100x100", None, (100, 100))])
def test_sources_above_max_short_side_are_scaled_down(size, rotate, want, tmp_path):
    from preprocess.media import video_size

    src = make_video(tmp_path / "src.mp4", seconds=2.0, fps="25", size=size)
    if rotate:  # a phone video: stored landscape, shown portrait; the cap applies to the picture as shown
        rotated = tmp_path / "rotated.mp4"
        run_ffmpeg(["-display_rotation", str(rotate), "-i", str(src), "-c", "copy", str(rotated)])
        src = rotated
    details, video, audio = convert(src, tmp_path, ResampleParams(max_short_side=100))
    assert video_size(video) == want
    assert details["downscaled"] == (want != (100, 100)) and details["video_copied"] == (not details["downscaled"])
    assert_exact(details, video, audio)
    # null keeps every size: a constant 25 fps source is copied as it is
    kept, video, _ = convert(src, tmp_path / "kept", ResampleParams(max_short_side=None))
    assert kept["video_copied"] and not kept["downscaled"]
