"""align: geometry and smoothing units, and the dlib path on the session's talking-face clips (lips centred, resume)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pipeline_project import copy_project, first_tracked_video, local_client, project_env

from preprocess.align import geometry, mouth
from preprocess.align.smoothing import interpolate, moving_average, split_pieces


# ------------------------------------------------------------------------------------------ units
def test_similarity_recovers_a_known_transform_and_the_template_is_fixed():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 300, (5, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -40.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    m = geometry.similarity(src, src @ rot.T + shift)
    assert np.allclose(m[:, :2], rot) and np.allclose(m[:, 2], shift)
    assert np.allclose(geometry.similarity(geometry.TEMPLATE, geometry.TEMPLATE), [[1, 0, 0], [0, 1, 0]])
    inv = geometry.invert(m)
    assert np.allclose(geometry.apply(geometry.compose(inv, m), src), src)


def test_canonical_mouth_crop_stays_inside_the_canvas():
    half = mouth.HALF
    assert half <= geometry.MOUTH_CENTRE.min() and geometry.MOUTH_CENTRE.max() <= geometry.CANVAS - 1 - half


def test_gaps_interpolated_when_short_split_when_long():
    valid = np.ones(100, bool)
    valid[10:15] = False  # 5: interpolated
    valid[40:60] = False  # 20: split
    valid[95:] = False  # trailing 5: held
    assert split_pieces(valid, max_gap=12) == [(0, 40), (60, 100)]
    assert split_pieces(np.zeros(5, bool), 12) == []
    pts = np.arange(100, dtype=float)[:, None] * np.ones((1, 3))
    pts[~valid] = -1e6
    filled = interpolate(pts, valid)
    assert np.allclose(filled[10:15, 0], np.arange(10, 15)) and np.allclose(filled[95:, 0], 94)


def test_moving_average_is_centred_and_keeps_lines():
    line = np.arange(50, dtype=float)[:, None]
    assert np.allclose(moving_average(line, 6), line)  # a centred window leaves a ramp (and the ends) alone
    noisy = line + np.where(np.arange(50) % 2, 1.0, -1.0)[:, None]
    assert np.abs(moving_average(noisy, 6) - line)[6:-6].max() < 0.1


# ------------------------------ the test pipeline project: track boxes (RetinaFace or dlib), dlib landmarks
def _aligned(root, corpus):
    from preprocess.align import stage as align
    from preprocess.align.align_video import load_aligned

    table = pd.read_parquet(root / "data" / "align" / corpus / "status.parquet")
    return {vid: load_aligned(align.output_path(corpus, vid)) for vid in table.video_id[table.status == "ok"]}


def test_every_clip_is_aligned_with_the_documented_arrays(aligned_project):
    root = aligned_project
    with project_env(root):
        for corpus, n in (("gridt", 6), ("cremadt", 4)):
            table = pd.read_parquet(root / "data" / "align" / corpus / "status.parquet")
            assert (table.status == "ok").sum() == n, table[["video_id", "status", "reason"]]
            # the faceless clip failed at track for real, and align says so instead of dropping it
            assert table[table.status != "ok"].reason.tolist() == ([] if corpus == "gridt" else
                                                                   ["track stage failed: no face found"])
            for vid, (arrays, meta) in _aligned(root, corpus).items():
                t = len(arrays["frame"])
                assert "crops" not in arrays and "audio" not in arrays  # no pixels, no audio: the crop stage's
                assert arrays["landmarks_crop"].shape == (t, 68, 2) and arrays["landmarks_crop"].dtype == np.float32
                assert arrays["transforms"].shape == (t, 2, 3) and arrays["interpolated"].dtype == bool
                assert arrays["crop_transforms"].shape == (t, 2, 3) and arrays["crop_transforms"].dtype == np.float64
                assert meta["backend"] == "dlib" and not meta["color"]
                assert np.isnan(arrays["scores"]).all()  # dlib has no per-point scores
                # the crop transform is the canonical one moved to the mouth: the same rotation and scale
                assert np.array_equal(arrays["crop_transforms"][:, :, :2], arrays["transforms"][:, :, :2])
                mapped = geometry.apply(arrays["crop_transforms"], arrays["landmarks"].astype(np.float64))
                assert np.allclose(mapped, arrays["landmarks_crop"], atol=1e-3)


def test_lips_are_centred_and_mouth_width_is_canonical(aligned_project):
    """Mean of points 48-67 within 8 px of the crop centre in every frame and 3 px on average per clip;
    median mouth width (48 to 54) within 30% of the canonical 45 px."""
    root = aligned_project
    with project_env(root):
        worst = {}
        for corpus in ("gridt", "cremadt"):
            for vid, (arrays, meta) in _aligned(root, corpus).items():
                for piece in np.unique(arrays["piece"]):
                    lm = arrays["landmarks_crop"][arrays["piece"] == piece]
                    offset = np.linalg.norm(lm[:, 48:68].mean(1) - mouth.HALF, axis=-1)
                    width = np.median(np.linalg.norm(lm[:, 54] - lm[:, 48], axis=-1))
                    worst[f"{vid}/{piece}"] = (offset.max(), offset.mean(), width)
                    assert offset.max() <= 8.0, (vid, offset.max())
                    assert offset.mean() <= 3.0, (vid, offset.mean())
                    assert abs(width - geometry.MOUTH_WIDTH) <= 0.3 * geometry.MOUTH_WIDTH, (vid, width)
        print({k: tuple(round(float(x), 2) for x in v) for k, v in worst.items()})


def test_killed_run_resumes_and_failed_tracks_are_accounted(aligned_project, tmp_path):
    from preprocess import paths
    from pipeline import stages
    from preprocess.align import stage as align
    from preprocess.records import FAILED, StatusRecord, read_record, write_record

    root = copy_project(aligned_project, tmp_path / "project")
    with project_env(root), local_client() as client:
        vids = sorted(pd.read_parquet(paths.source_manifest_path("gridt")).video_id)
        before = {v: read_record("align", "gridt", v) for v in vids}
        lost, bad = vids[0], vids[2]
        reference, _ = _aligned(root, "gridt")[lost]
        reference_bytes = align.output_path("gridt", lost).read_bytes()
        align.output_path("gridt", lost).unlink()  # as if killed before the .npz was renamed into place
        (align.output_path("gridt", lost).parent / ".tmp-123-x.npz").write_bytes(b"half")
        track = read_record("track", "gridt", bad)
        write_record(StatusRecord("gridt", bad, "track", FAILED, "no face found in any frame", "fp-bad"))
        records = {r.video_id: r for r in stages.run("align", "gridt", client)}
        assert records[bad].status == "skipped" and "no face found" in records[bad].reason
        assert not align.output_path("gridt", bad).exists()
        redone, _ = _aligned(root, "gridt")[lost]
        for key in ("landmarks_crop", "transforms", "crop_transforms", "landmarks"):
            assert np.array_equal(redone[key], reference[key]), key  # deterministic
        assert align.output_path("gridt", lost).read_bytes() == reference_bytes  # to the byte (zip timestamps)
        untouched = [v for v in vids if v not in (lost, bad)]
        assert all(records[v] == before[v] for v in untouched)  # not redone
        assert not list((root / "data" / "align" / "gridt").rglob(".tmp-*"))
        write_record(track)


def test_missing_fan_weights_give_a_plain_error(tmp_path, monkeypatch):
    from preprocess.weights import FAN_FILE, resolve_weights

    monkeypatch.setenv("AVLIPS_ROOT", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="weights.fan"):
        resolve_weights("nowhere/2DFAN4.pth.tar", FAN_FILE, None, "FAN landmark weights", "fan")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(FileNotFoundError, match=f"{FAN_FILE} not found: put it at .*hub/checkpoints"):
        resolve_weights(None, FAN_FILE, None, "FAN landmark weights", "fan")


@pytest.mark.slow  # a stage process on its cluster, killed, then rerun
def test_align_cli_killed_mid_run_resumes(aligned_project, tmp_path):
    """`python -m pipeline stage align` killed (SIGKILL) after its first finished video, then rerun."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from preprocess.records import read_record

    root = copy_project(aligned_project, tmp_path / "project")
    align_dir = root / "data" / "align" / "gridt"
    import shutil

    shutil.rmtree(align_dir)
    env = {**os.environ, "AVLIPS_ROOT": str(root), "AVLIPS_WORKERS": "1"}
    cmd = [sys.executable, "-m", "pipeline", "stage", "align", "gridt", "--workers", "1"]
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list((align_dir / "status").glob("*.json")):
            time.sleep(0.05)
        assert list((align_dir / "status").glob("*.json")), "no video finished in time"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done_before = {p.stem for p in (align_dir / "status").glob("*.json")}
    assert len(done_before) < 6
    result = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"({len(done_before)} already done, {6 - len(done_before)} processed now)" in result.stderr
    with project_env(root):
        assert all(read_record("align", "gridt", p.stem).status == "ok" for p in (align_dir / "status").glob("*.json"))
    assert len(list((align_dir / "aligned").glob("*.npz"))) == 6
    assert not list(align_dir.rglob(".tmp-*"))


def test_colour_crops_and_missing_audio(aligned_project, tmp_path):
    """align.color gives (T, 96, 96, 3) crops, the gray ones' picture; a video without audio gets zeros and
    says so in its json and manifest row."""
    import json

    from preprocess.align.align_params import AlignParams
    from preprocess.align.align_video import align_video, load_aligned, make_landmarker
    from preprocess.crop.samples import manifest_row, render_samples
    from preprocess.shardformat import load_npy

    keys = ("piece", "frame", "crop_transforms", "landmarks_crop")
    root = aligned_project
    with project_env(root):
        row, boxes, video, _ = first_tracked_video()
        samples = {}
        for color in (True, False):
            params = AlignParams(backend="dlib", color=color)
            out = tmp_path / f"{color}.npz"
            align_video(video, boxes, [], params, make_landmarker(params), out)
            [(_, samples[color])] = render_samples("gridt", row, load_aligned(out, keys), video, None, lambda p: "h")
    fields = {color: {name.split(".", 1)[1]: data for name, data in members} for color, members in samples.items()}
    colour, gray = load_npy(fields[True]["video.npy"]), load_npy(fields[False]["video.npy"])
    assert colour.shape == (30, 96, 96, 3) and colour.dtype == np.uint8 and gray.shape == (30, 96, 96)
    luma = colour.astype(float) @ [0.299, 0.587, 0.114]
    assert np.abs(luma - gray).mean() < 1.0  # the same picture, in colour (gray: converted before the warp)
    assert gray.std() > 10  # a real image, not a constant border
    assert load_npy(fields[True]["audio.npy"]).shape == (30, 640) and not load_npy(fields[True]["audio.npy"]).any()
    meta_json = json.loads(fields[True]["json"])
    assert meta_json["has_audio"] is False and meta_json["color"] is True
    assert manifest_row(samples[True])["has_audio"] is False
