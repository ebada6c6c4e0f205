"""track on the session's talking-face clips: boxes checked by an independent detector, speaker choice on GRID
composites, a face that disappears, a video without a face, and the stage on dask with its output contract.
The checks against RetinaFace and BlazeFace need their weights (../shared/weights)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from preprocess.ffmpeg import run_ffmpeg
from preprocess.resample.convert import ResampleParams, resample_video
from preprocess.track.track_params import TrackParams
from preprocess.track.tracking import TrackingParams
from preprocess.track.tracking import iou_matrix
from preprocess.track.track_video import BOX_COLUMNS, track_video

PAIRS = [(0, 1), (2, 3), (4, 5), (1, 4)]  # speaker, other: 4 pairs x 2 placements = 8 composites
CLIPS = [("grid", i) for i in range(6)] + [("cremad", i) for i in range(3)]  # (set, index) of the session's clips


def clip_of(clips, which: tuple[str, int]) -> Path:
    return getattr(clips, which[0])[which[1]]


@pytest.fixture(scope="module")
def detector(retinaface):
    from preprocess.track.detect import RetinaFaceBatch

    torch.set_num_threads(1)
    return RetinaFaceBatch(retinaface)


def resampled(src: Path, folder: Path) -> tuple[Path, Path]:
    """The resample stage's outputs for `src`: 25 fps video and exact-length 16 kHz audio."""
    folder = folder / "resampled"  # never the source itself
    video, audio = folder / f"{src.stem}.mkv", folder / f"{src.stem}.wav"
    if not video.exists():
        resample_video(src, video, audio, ResampleParams())
    return video, audio


def composite(speaker: Path, other: Path, out: Path, speaker_left: bool, listener: bool) -> Path:
    """Two GRID faces side by side with the speaker's audio only.

    listener=True: the other face is its clip's first silent half-second played back and forth (mouth
    closed, head moving naturally); False: the other face talks too, unheard.
    """
    if listener:
        other_v = ("[1:v]trim=end_frame=13,setpts=PTS-STARTPTS,split[f][r0];[r0]reverse[r];"
                   "[f][r]concat=n=2:v=1:a=0,loop=loop=-1:size=26:start=0,trim=end_frame=75,setpts=N/(25*TB)[o];")
    else:
        other_v = "[1:v]setpts=PTS-STARTPTS[o];"
    pair = "[s][o]" if speaker_left else "[o][s]"
    graph = other_v + "[0:v]setpts=PTS-STARTPTS[s];" + pair + "hstack=inputs=2,trim=end_frame=75[v]"
    run_ffmpeg(["-i", str(speaker), "-i", str(other), "-filter_complex", graph, "-map", "[v]", "-map", "0:a",
                "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-pix_fmt", "yuv420p",
                "-c:a", "pcm_s16le", "-f", "matroska", str(out)])
    return out


def blazeface_boxes(video: Path, weights: Path) -> list[np.ndarray]:
    from face_alignment.detection.blazeface.blazeface_detector import BlazeFaceDetector

    from preprocess.media import read_frames

    detector = BlazeFaceDetector("cpu", path_to_detector=str(weights / "blazeface.pth"),
                                 path_to_anchor=str(weights / "anchors.npy"))
    frames = torch.from_numpy(read_frames(video)).permute(0, 3, 1, 2)  # RGB, as face-alignment passes it
    return [np.asarray(d).reshape(-1, 5) for d in detector.detect_from_batch(frames)]


@pytest.mark.parametrize("which", CLIPS, ids=lambda w: f"{w[0]}{w[1]}")
def test_chosen_box_covers_the_face_in_every_frame(clips, which, detector, blazeface, tmp_path_factory):
    video, audio = resampled(clip_of(clips, which), tmp_path_factory.mktemp("clips"))
    result = track_video(video, audio, TrackParams(), detector)
    boxes = pd.DataFrame(result.boxes)
    assert list(boxes.columns) == BOX_COLUMNS
    reference = blazeface_boxes(video, blazeface)
    assert sorted(boxes.frame) == list(range(len(reference)))  # one face, tracked through every frame
    ious = np.array([iou_matrix(row[None], ref).max() if len(ref) else 0.0
                     for row, ref in zip(boxes[["x1", "y1", "x2", "y2"]].to_numpy(), reference)])
    assert (ious >= 0.5).mean() >= 0.95, np.round(ious, 2)
    assert result.segments[0]["sync_method"] == "single-face" and result.segments[0]["n_faces"] == 1


@pytest.mark.parametrize("which", [("grid", 0), ("cremad", 0)], ids=lambda w: f"{w[0]}{w[1]}")
def test_the_default_dlib_detector_tracks_the_face_from_small_gray_frames(clips, which, blazeface, tmp_path_factory):
    """The default path (dlib's HOG on the decoder's small luma frames) tracks the one face in every frame.
    dlib's boxes are tighter than BlazeFace's (brows to chin), so the check is that each box sits inside the
    reference face and covers most of its width."""
    from preprocess.track.detect import DetectorParams, DlibHogDetector

    video, audio = resampled(clip_of(clips, which), tmp_path_factory.mktemp("clips"))
    result = track_video(video, audio, TrackParams(detector="dlib"), DlibHogDetector(DetectorParams()))
    reference = blazeface_boxes(video, blazeface)
    boxes = pd.DataFrame(result.boxes)
    assert sorted(boxes.frame) == list(range(len(reference)))
    for row, ref in zip(boxes[["x1", "y1", "x2", "y2"]].to_numpy(), reference):
        ref = ref[np.argmax(iou_matrix(row[None], ref)[0])]
        cx, cy = (row[0] + row[2]) / 2, (row[1] + row[3]) / 2
        assert ref[0] < cx < ref[2] and ref[1] < cy < ref[3]
        assert 0.6 < (row[2] - row[0]) / (ref[2] - ref[0]) < 1.4


def test_the_saved_dlib_detector_is_the_built_one(clips, tmp_path):
    """The track stage loads dlib's frontal face detector from a saved copy (1 ms instead of 0.34 s): the
    same boxes, scores and sub-detectors on real frames, full size and at detection size, upsampled or not;
    a damaged copy is replaced by a fresh build."""
    import cv2
    import dlib

    from preprocess.media import read_frames
    from preprocess.track.detect import frontal_face_detector

    built = frontal_face_detector(tmp_path)  # nothing saved yet: built, then saved
    [saved_file] = tmp_path.glob("*.svm")
    saved = frontal_face_detector(tmp_path)
    reference = dlib.get_frontal_face_detector()
    found = 0
    for video in (clips.grid[0], clips.cremad[0]):
        for i, frame in enumerate(read_frames(video, gray=True)[::4]):
            frame = np.ascontiguousarray(frame)  # dlib misreads a strided array
            if i % 2:
                frame = cv2.resize(frame, None, fx=192 / min(frame.shape), fy=192 / min(frame.shape),
                                   interpolation=cv2.INTER_AREA)
            for upsample in (0, 1):
                want = reference.run(frame, upsample, -0.5)
                for detector in (built, saved):
                    got = detector.run(frame, upsample, -0.5)
                    assert [(r.left(), r.top(), r.right(), r.bottom()) for r in got[0]] == \
                        [(r.left(), r.top(), r.right(), r.bottom()) for r in want[0]]
                    assert list(got[1]) == list(want[1]) and list(got[2]) == list(want[2])
                found += len(want[0])
    assert found > 10
    saved_file.write_bytes(b"not a detector")
    assert len(frontal_face_detector(tmp_path).run(frame, 0, -0.5)[0]) == len(reference.run(frame, 0, -0.5)[0])
    assert saved_file.stat().st_size > 10_000  # saved again


@pytest.mark.parametrize("which", [("grid", 0), ("cremad", 0)], ids=lambda w: f"{w[0]}{w[1]}")
def test_small_i420_frames_match_full_decode_then_resize(clips, which, tmp_path_factory):
    """Track's decode (the decoder's scaler straight to detection size, in YUV 4:2:0) gives the frames that a
    full-size RGB decode and an area resize give, to within rounding: same count, same picture, colour
    planes in the right places."""
    import cv2

    from preprocess.media import iter_i420_batches, read_frames, video_size
    from preprocess.track.detect import detection_size

    video, _ = resampled(clip_of(clips, which), tmp_path_factory.mktemp("clips"))
    full = read_frames(video)
    width, height = video_size(video)
    assert full.shape[1:3] == (height, width)
    size = detection_size(width, height, 192)
    assert min(size) == 192 and size[0] % 2 == 0 and size[1] % 2 == 0
    small = np.concatenate(list(iter_i420_batches(video, size, batch=16)))
    assert small.shape == (len(full), size[1] * 3 // 2, size[0])
    rgb = np.stack([cv2.cvtColor(f, cv2.COLOR_YUV2RGB_I420) for f in small]).astype(np.int16)
    resized = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in full]).astype(np.int16)
    assert np.abs(rgb - resized).mean() < 3.0
    gray = np.stack([cv2.cvtColor(f.astype(np.uint8), cv2.COLOR_RGB2GRAY) for f in resized]).astype(np.float64)
    luma = small[:, :size[1]].astype(np.int16)  # limited range: 16 + 219/255 of full-range gray
    assert np.abs(luma - (16 + gray * 219 / 255)).mean() < 3.0
    with pytest.raises(ValueError, match="even size"):
        next(iter_i420_batches(video, (size[0] + 1, size[1])))


def _chosen_side(result) -> set[str]:
    return {"left" if (row.x1 + row.x2) / 2 < 360 else "right" for row in pd.DataFrame(result.boxes).itertuples()}


def track_composite(grid, pair, speaker_left: bool, listener: bool, detector, tmp_path):
    """Track a side-by-side composite of two GRID clips, resampled like the pipeline does."""
    src = composite(grid[pair[0]], grid[pair[1]], tmp_path / "c.mkv", speaker_left, listener=listener)
    video, audio = resampled(src, tmp_path)
    return track_video(video, audio, TrackParams(), detector)


@pytest.mark.parametrize("speaker_left", [True, False], ids=["speaker-left", "speaker-right"])
@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: f"grid{p[0]}+{p[1]}")
def test_speaker_beside_a_listener_is_chosen(clips, pair, speaker_left, detector, tmp_path):
    result = track_composite(clips.grid, pair, speaker_left, True, detector, tmp_path)
    assert len(result.segments) == 1
    seg = result.segments[0]
    assert _chosen_side(result) == {"left" if speaker_left else "right"}
    assert (seg["sync_method"], seg["speaker_ambiguous"], seg["n_faces"]) == ("av-energy", False, 2)
    assert seg["sync_offset"] is None and seg["audio_shift_frames"] == 0  # weights-free: offset unknown


@pytest.mark.parametrize("speaker_left", [True, False], ids=["speaker-left", "speaker-right"])
@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: f"grid{p[0]}+{p[1]}")
def test_two_talking_faces_with_one_heard_are_flagged_not_guessed(clips, pair, speaker_left, detector, tmp_path):
    result = track_composite(clips.grid, pair, speaker_left, False, detector, tmp_path)
    seg = result.segments[0]
    assert len(result.segments) == 1 and seg["speaker_ambiguous"] is True
    assert seg["sync_confidence"] < TrackParams().sync.energy_min_margin + 0.25  # low: the lead over the rival
    assert seg["sync_offset"] is None and seg["audio_shift_frames"] == 0
    assert result.details["speaker_ambiguous"] and "ambiguous" in result.details["note"]


def hide_face(clip: Path, out: Path, first: int, last: int) -> Path:
    """Frames first..last: the face covered by background stretched from the frame's edge.

    Only the face's area changes, so this is a face leaving, not a shot cut (a whole-width cover is a cut).
    """
    graph = (f"[0:v]split[a][b];[b]crop=60:200:0:80,scale=140:200[bg];"
             f"[a][bg]overlay=x=90:y=80:enable='between(n,{first},{last})'[v]")
    run_ffmpeg(["-i", str(clip), "-filter_complex", graph, "-map", "[v]", "-map", "0:a", "-c:v", "libx264",
                "-preset", "ultrafast", "-crf", "18", "-pix_fmt", "yuv420p", "-c:a", "pcm_s16le",
                "-f", "matroska", str(out)])
    return out


def test_a_face_gone_for_a_second_gives_a_marked_gap_or_two_segments(clips, detector, blazeface, tmp_path):
    video, audio = resampled(hide_face(clips.grid[0], tmp_path / "gone.mkv", 25, 49), tmp_path)
    bridged = track_video(video, audio, TrackParams(), detector)
    assert bridged.details["shot_cuts"] == 0
    assert [(s["start_frame"], s["end_frame"]) for s in bridged.segments] == [(0, 75)]
    gap = pd.DataFrame(bridged.boxes).set_index("frame").loc[25:49]
    assert not gap.detected.any() and gap.score.isna().all()  # marked, never a box on the background
    split = track_video(video, audio, replace(TrackParams(), tracking=TrackingParams(bridge_gaps=False, min_track_frames=20)), detector)
    spans = [(s["start_frame"], s["end_frame"]) for s in split.segments]
    assert len(spans) == 2 and spans[0][1] <= 25 and spans[1][0] >= 50, spans
    assert sorted(set(split.boxes["segment"])) == [0, 1]
    reference = blazeface_boxes(video, blazeface)
    for row in pd.DataFrame(split.boxes).itertuples():  # every kept box is on the face
        assert iou_matrix(np.array([[row.x1, row.y1, row.x2, row.y2]]), reference[row.frame]).max() >= 0.5


def test_a_shot_cut_splits_tracks_into_segments(clips, detector, blazeface, tmp_path):
    """Two GRID speakers cut together at frame 40: PySceneDetect finds the cut, each shot is a segment."""
    graph = ("[0:v]trim=end_frame=40,setpts=PTS-STARTPTS[a];[1:v]trim=start_frame=40,setpts=PTS-STARTPTS[b];"
             "[a][b]concat=n=2:v=1:a=0[v]")
    src = tmp_path / "cut.mkv"
    run_ffmpeg(["-i", str(clips.grid[0]), "-i", str(clips.grid[2]), "-filter_complex", graph, "-map", "[v]",
                "-map", "0:a",
                "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-pix_fmt", "yuv420p",
                "-c:a", "pcm_s16le", "-f", "matroska", str(src)])
    video, audio = resampled(src, tmp_path)
    result = track_video(video, audio, replace(TrackParams(), tracking=TrackingParams(min_track_frames=25)), detector)
    assert result.details["shot_cuts"] == 1
    assert [(s["start_frame"], s["end_frame"]) for s in result.segments] == [(0, 40), (40, 75)]
    reference = blazeface_boxes(video, blazeface)
    ious = [iou_matrix(np.array([[r.x1, r.y1, r.x2, r.y2]]), reference[r.frame]).max()
            for r in pd.DataFrame(result.boxes).itertuples()]
    assert np.mean(np.array(ious) >= 0.5) >= 0.95


def set_params(project: Path, **sections) -> None:
    """Replace whole sections of the scratch project's params.yaml (whatever the repository's already holds)."""
    from pipeline.corpora import load_params, yaml_roundtrip

    params = load_params(project / "params.yaml")
    params.update(sections)
    with (project / "params.yaml").open("w") as f:
        yaml_roundtrip().dump(params, f)


def test_stage_accounts_for_every_video_and_writes_the_contract(project, clips, dask_client):
    from conftest import copy_clip, make_video

    from preprocess import paths
    from pipeline.registry import add_corpus
    from pipeline import stages
    from preprocess.track import stage as track

    set_params(project, weights={"syncnet": None})  # the repository's detector (dlib): no weights needed
    raw = project / "raw"
    copy_clip(clips.grid[0], raw, "talker a.mpg")
    copy_clip(clips.grid[1], raw)
    make_video(raw / "noface.mp4", seconds=2.0, size="320x240")
    (raw / "empty.mp4").write_bytes(b"")
    add_corpus("mix", "raw", pattern="*.*", role="pretrain", label="real")
    stages.run("resample", "mix", dask_client)

    records = {r.video_id: r for r in stages.run("track", "mix", dask_client)}
    manifest = pd.read_parquet(paths.source_manifest_path("mix")).set_index("relpath").video_id
    status = pd.read_parquet(paths.status_table_path("track", "mix")).set_index("video_id")
    assert sorted(status.index) == sorted(manifest)
    assert (status.loc[manifest["noface.mp4"], ["status", "reason"]] == ["failed", "no face found"]).all()
    assert status.loc[manifest["empty.mp4"], "status"] == "skipped"
    assert "resample stage failed" in status.loc[manifest["empty.mp4"], "reason"]
    ok = sorted(manifest[["talker a.mpg", clips.grid[1].name]])
    assert sorted(status.index[status.status == "ok"]) == ok

    tracks = pd.read_parquet(track.tracks_table_path("mix"))
    assert list(tracks.columns) == ["corpus", "video_id", "segment", "start_frame", "end_frame", "n_faces",
                                    "sync_method", "sync_offset", "sync_confidence", "speaker_ambiguous",
                                    "audio_shift_frames"]
    assert pq.read_schema(track.tracks_table_path("mix")) == track.TRACK_SCHEMA and tracks.sync_offset.isna().all()
    assert list(tracks.video_id) == ok and (tracks.end_frame - tracks.start_frame == 75).all()
    out = paths.stage_dir("track", "mix")
    assert sorted(p.stem for p in (out / "boxes").iterdir()) == ok
    boxes = pd.read_parquet(out / "boxes" / f"{ok[0]}.parquet")
    assert list(boxes.columns) == BOX_COLUMNS
    assert {c: str(t) for c, t in boxes.dtypes.items()} == {
        "segment": "int32", "frame": "int32", "x1": "float32", "y1": "float32", "x2": "float32",
        "y2": "float32", "score": "float32", "detected": "bool"}
    table_bytes = track.tracks_table_path("mix").read_bytes()

    again = {r.video_id: r for r in stages.run("track", "mix", dask_client)}
    assert again == records  # nothing redone
    assert track.tracks_table_path("mix").read_bytes() == table_bytes  # deterministic

    # A pretraining threshold nobody passes: real videos become skipped rows, with the reason in words.
    set_params(project, track={"pretrain_min_energy_correlation": 0.99})
    redone = {r.video_id: r for r in stages.run("track", "mix", dask_client)}
    assert all(redone[v].status == "skipped" and "agree too little" in redone[v].reason for v in ok)
    assert len(pd.read_parquet(track.tracks_table_path("mix"))) == 0
    assert not any((out / "boxes").iterdir())


def test_stage_names_missing_weights(project):
    from pipeline.corpora import load_params
    from preprocess.track import stage as track

    set_params(project, weights={"retinaface": "models/nowhere/retinaface_mobilenet0.25.pth"})
    with pytest.raises(FileNotFoundError, match="retinaface_mobilenet0.25.pth.*weights.retinaface"):
        track.weight_files(load_params())
