"""`python -m pipeline predict`: the session's talking-face clips through the stages' resample/track/align code
and a detector.

The detector is the real architecture, tiny and randomly initialised (its probabilities mean nothing; what is
checked is that the right frames reach it and every file is accounted for). One in-process run scores a real
GRID clip, a composite of two faces, a clip without a face, a non-video file, a too-short clip and a clip
without audio, with --json and --png; a second run, a real process, checks the text output and the exit status.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from pipeline_project import REPO, make_faceless, project_env, project_params

TINY = dict(stem_channels=8, trunk_widths=(8, 8, 16, 16), width=32, heads=4, ffn=64, layers=2, max_frames=50)


def tiny_detector_file(path, meta: dict | None = None):
    from models.detector import Detector, DetectorConfig
    from models.video import VideoEncoderConfig
    from train.scoring import save_detector

    torch.manual_seed(0)
    save_detector(path, Detector(VideoEncoderConfig(**TINY), DetectorConfig(hidden=16)), meta or {"note": "test"})
    return path


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    from pipeline import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def scored(clips, tmp_path_factory):
    """One `predict --json --png` run over six files: (rc, {name: video record}, png, project root, inputs)."""
    from preprocess.ffmpeg import run_ffmpeg
    from test_track_real import composite

    tmp = tmp_path_factory.mktemp("predict")
    root = tmp / "project"
    root.mkdir()
    (root / "params.yaml").write_text(project_params(clips))  # the test pipeline project's params: same crops
    grid = clips.grid
    files = {"real": grid[0],
             "two_faces": composite(grid[0], grid[1], tmp / "two_faces.mkv", speaker_left=True, listener=True),
             "no_face": make_faceless(tmp / "no_face.mp4"),
             "not_video": tmp / "notes.mp4",
             "short": tmp / "short.mp4",
             "silent": tmp / "silent.mp4"}
    files["not_video"].write_text("these are meeting notes, not a video\n")
    run_ffmpeg(["-i", str(grid[0]), "-t", "0.6", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
                str(files["short"])])
    run_ffmpeg(["-i", str(grid[2]), "-an", "-c:v", "libx264", "-preset", "ultrafast", str(files["silent"])])
    detector = tiny_detector_file(tmp / "detector.pt", {"val_threshold": 0.05})  # a logit, as finetune stores
    png = tmp / "out" / "timeline.png"
    with project_env(root):
        rc, out, err = run_cli(["predict", *map(str, files.values()), "--detector", str(detector), "--json",
                                "--png", str(png)])
    doc = json.loads(out)
    assert [v["file"] for v in doc["videos"]] == [str(f) for f in files.values()]  # input order
    return {"rc": rc, "videos": dict(zip(files, doc["videos"])), "png": png, "root": root, "files": files,
            "detector": detector, "stderr": err}


def test_a_real_clip_gets_a_probability_a_timeline_and_its_track(scored):
    v = scored["videos"]["real"]
    assert v["ok"] and v["reason"] == "" and v["n_frames"] == 75
    logits = [c["logit"] for c in v["timeline"]]
    assert [(c["start_s"], c["end_s"], c["frame"]) for c in v["timeline"]] == [(0, 1, 0), (1, 2, 25), (2, 3, 50)]
    assert v["score"] == pytest.approx(np.mean(logits), abs=1e-5)
    assert v["probability"] == pytest.approx(1 / (1 + math.exp(-v["score"])))
    assert 0 < v["probability"] < 1 and len(set(logits)) == 3  # three different seconds, three different logits
    (track,) = v["tracks"]
    assert (track["start_frame"], track["end_frame"], track["n_clips"]) == (0, 75, 3)
    assert (track["n_faces"], track["sync_method"], track["speaker_ambiguous"]) == (1, "single-face", False)
    assert v["face_tracks"] == 1
    x1, y1, x2, y2 = track["box"]
    assert 0 <= x1 < x2 <= 360 and 0 <= y1 < y2 <= 288 and x2 - x1 > 64  # the GRID face, in frame pixels
    assert set(v["seconds"]) == {"resample", "track", "align", "score"}


def test_the_crops_scored_are_the_crop_stages_crops(scored, packed_project, clips):
    """predict runs the stages' code with the stages' params: its clip logits are the detector's logits on
    the crops the crop stage packed for the same clip in the test pipeline project."""
    import pandas as pd

    from preprocess import paths
    from preprocess.contract import sample_key
    from preprocess.shardformat import read_sample
    from train.scoring import load_detector, video_clip_logits

    root = packed_project
    with project_env(root):
        manifest = pd.read_parquet(paths.source_manifest_path("gridt"))
        video_id = manifest.loc[manifest.relpath == clips.grid[0].name, "video_id"].item()
        shards = pd.read_parquet(root / "data" / "shards" / "gridt" / "manifest.parquet").set_index("key")
        key = sample_key("gridt", video_id, 0)
        sample = read_sample(root / "data" / "shards" / "gridt" / shards.loc[key, "shard"], key)
    assert (sample["json"]["start_frame"], sample["json"]["end_frame"]) == (0, 75)
    detector, _ = load_detector(scored["detector"])
    expected = video_clip_logits(detector, sample["video.npy"])
    got = [c["logit"] for c in scored["videos"]["real"]["timeline"]]
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_two_faces_the_speaker_is_scored_and_both_are_counted(scored):
    v = scored["videos"]["two_faces"]
    assert v["ok"] and v["face_tracks"] == 2
    (track,) = v["tracks"]
    assert track["n_faces"] == 2 and track["sync_method"] == "av-energy" and not track["speaker_ambiguous"]
    x1, _, x2, _ = track["box"]
    assert x2 < 360  # the speaker is the left half of the 720 px composite; the listener is not scored
    assert len(v["timeline"]) == 3


@pytest.mark.parametrize("name, step, words", [
    ("no_face", "track", "no face found"),
    ("not_video", "resample", "not a readable video file"),
    ("short", "resample", "too short"),
])
def test_a_file_that_cannot_be_scored_gets_a_plain_reason(scored, name, step, words):
    v = scored["videos"][name]
    assert not v["ok"] and words in v["reason"] and v["failed_step"] == step
    assert v["probability"] is None and v["timeline"] == []


def test_a_file_without_audio_is_scored(scored):
    v = scored["videos"]["silent"]
    assert v["ok"] and len(v["timeline"]) == 3 and v["tracks"][0]["sync_method"] == "single-face"


def test_unscored_files_make_a_non_zero_exit_and_the_others_are_still_scored(scored):
    assert scored["rc"] == 1
    assert [n for n, v in scored["videos"].items() if v["ok"]] == ["real", "two_faces", "silent"]
    assert "Traceback" not in scored["stderr"]


def test_png_draws_a_row_per_file(scored):
    import matplotlib.image

    image = matplotlib.image.imread(scored["png"])
    assert image.shape[0] == round((1.9 * 6 + 0.3) * 100)  # six rows, one per file
    rows = np.array_split(image[..., :3].mean(-1), 6)
    # scored rows show mouth crops (grey, textured); unscored rows are white with a line of text
    assert rows[0].std() > 0.15 and rows[1].std() > 0.15 and rows[5].std() > 0.15
    assert rows[2].mean() > rows[0].mean() + 0.1


def test_text_output_and_exit_status_of_the_command(scored, clips):
    """A real `python -m pipeline predict` process: text per file, the same probability as the --json run."""
    missing = scored["root"] / "missing.mp4"
    env = {**os.environ, "AVLIPS_ROOT": str(scored["root"]), "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "pipeline", "predict", str(clips.grid[0]), str(missing),
                           "--detector", str(scored["detector"])], capture_output=True, text=True, env=env,
                          cwd=scored["root"])
    assert proc.returncode == 1, proc.stderr[-2000:]
    real = scored["videos"]["real"]
    lines = proc.stdout.splitlines()
    verdict = "fake" if real["score"] > 0.05 else "real"
    assert lines[0] == (f"{clips.grid[0]}: fake probability {real['probability']:.3f} (mean clip logit "
                        f"{real['score']:+.3f} over 3 one-second clips of 3.0 s); at the detector's val threshold "
                        f"(0.512): {verdict}")
    assert "1 face track seen, at most 1 at once" in lines[1]
    assert lines[2].strip().startswith("frames 0-74 (0.0-3.0 s), face box x")
    cells = " | ".join(f"{c['start_s']:5.1f}s {c['probability']:.2f}" for c in real["timeline"])
    # the project has no pretrained pair: the zero-shot score is absent, and says why
    assert lines[3].startswith("  audio-visual mismatch: none (no audio-visual mismatch score: no pretrained encoder")
    assert lines[4:6] == ["  timeline (fake probability per second):", "    " + cells]
    assert lines[6] == f"{missing}: cannot score: no such file"
    assert "Traceback" not in proc.stderr


def test_a_missing_detector_is_a_plain_error_before_any_video(scored, clips, tmp_path):
    with project_env(scored["root"]):
        rc, out, err = run_cli(["predict", str(clips.grid[0]), "--detector", str(tmp_path / "none.pt")])
    assert rc == 2 and out == ""
    assert err.startswith("error: no fine-tuned detector at") and "Traceback" not in err


def test_untrained_detector_marker_is_a_plain_error(scored, clips, tmp_path):
    from train.scoring import save_untrained

    marker = tmp_path / "detector.pt"
    save_untrained(marker, "no finetune corpus registered", {})
    with project_env(scored["root"]):
        rc, out, err = run_cli(["predict", str(clips.grid[0]), "--detector", str(marker)])
    assert rc == 2 and out == "" and "was not trained: no finetune corpus registered" in err


def test_clips_are_scored_per_piece_in_chunks_and_placed_at_their_frames(tmp_path):
    """Two pieces (frames 30-289 and 400-459): 10 + 2 clips, tails left out, chunked scoring equal to one
    call per piece, each clip at its own second, the video score the mean over both pieces."""
    from pipeline.predict import format_text, score_crops
    from pipeline.video_crops import Segment, VideoCrops
    from train.scoring import load_detector, video_clip_logits

    detector, _ = load_detector(tiny_detector_file(tmp_path / "d.pt"))
    rng = np.random.default_rng(0)
    pieces = [(30, 260), (400, 60)]
    segments = [Segment(i, i, np.arange(first, first + n, dtype=np.int32),
                        rng.integers(0, 256, (n, 96, 96), dtype=np.uint8), (0, 0, 100, 100), 1, "single-face",
                        False) for i, (first, n) in enumerate(pieces)]
    progress = []
    pred = score_crops(VideoCrops(tmp_path / "v.mp4", n_frames=600, face_tracks=1, segments=segments), detector,
                       batch_size=4, on_clips=lambda done, total: progress.append((done, total)))
    assert [c.frame for c in pred.clips] == [30 + 25 * i for i in range(10)] + [400, 425]
    expected = np.concatenate([video_clip_logits(detector, s.crops) for s in segments])
    np.testing.assert_allclose([c.logit for c in pred.clips], expected, atol=1e-5)
    assert pred.score == pytest.approx(float(expected.mean()), abs=1e-5)
    assert progress == [(4, 12), (8, 12), (10, 12), (12, 12)]
    assert [t["n_clips"] for t in pred.tracks] == [10, 2]
    text = format_text(pred)
    assert "frames 30-289 (1.2-11.6 s)" in text and "frames 400-459 (16.0-18.4 s)" in text
    assert " 10.2s " in text and " 16.0s " in text and " 11.2s " not in text  # no second without a face


def test_colour_crops_are_scored_as_their_grey_version(tmp_path):
    """align.color: true gives RGB crops; the detector is grayscale, so they are scored converted to grey by the
    shard reader's rule (what evaluate scores), not another one."""
    from pipeline.predict import score_crops
    from preprocess.shardformat import crops_to_gray
    from pipeline.video_crops import Segment, VideoCrops
    from train.scoring import load_detector, video_clip_logits

    detector, _ = load_detector(tiny_detector_file(tmp_path / "d.pt"))
    rgb = np.random.default_rng(1).integers(0, 256, (50, 96, 96, 3), dtype=np.uint8)
    seg = Segment(0, 0, np.arange(50, dtype=np.int32), rgb, (0, 0, 100, 100), 1, "single-face", False)
    pred = score_crops(VideoCrops(tmp_path / "v.mp4", n_frames=50, face_tracks=1, segments=[seg]), detector)
    grey = crops_to_gray(rgb)
    assert grey.shape == (50, 96, 96) and grey.dtype == np.uint8
    np.testing.assert_allclose([c.logit for c in pred.clips], video_clip_logits(detector, grey), atol=1e-5)
