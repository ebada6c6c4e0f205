"""FAN backend: geometry of its crop / heatmap decoding, and (random weights: none offline) that it
produces samples shaped exactly like the dlib path's."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pipeline_project import first_tracked_video, project_env

from preprocess.align import landmarks_fan


def test_heatmap_peak_maps_back_to_the_frame_point():
    box = np.array([100.0, 80.0, 220.0, 230.0])
    m, side, centre = landmarks_fan.crop_transform(box, 165.0)
    point = np.array([150.0, 170.0])
    in_crop = m[:, :2] @ point + m[:, 2]  # pixel-centre coordinates in the 256 crop
    cell = (in_crop + 0.5) / 4  # heatmap cell coordinates (cell j centred at j + 0.5)
    yy, xx = np.mgrid[0:64, 0:64]
    heat = np.exp(-((xx + 0.5 - cell[0]) ** 2 + (yy + 0.5 - cell[1]) ** 2) / 2.0)[None, None]
    pts, scores = landmarks_fan.heatmap_peaks(np.repeat(heat, 68, axis=1))
    back = pts[0, 0] * side / 64 - side / 2 + centre
    assert np.abs(back - point).max() <= side / 64  # within one heatmap cell
    assert scores.shape == (1, 68)


@pytest.mark.slow  # the full FAN network on CPU
def test_fan_and_dlib_paths_give_identically_shaped_samples(aligned_project, monkeypatch, tmp_path):
    from preprocess.align import align_video as align_video_mod
    from preprocess.align import stage as align
    from preprocess.align.align_params import AlignParams
    from preprocess.crop.samples import render_samples

    keys = ("piece", "frame", "crop_transforms", "landmarks_crop")
    root = aligned_project
    with project_env(root):
        row, boxes, video, audio = first_tracked_video()
        tracks = pd.read_parquet(root / "data" / "track" / "gridt" / "tracks.parquet")
        tracks = tracks[tracks.video_id == row["video_id"]].to_dict("records")
        params = AlignParams(backend="fan", batch_size=16)
        net = align_video_mod.make_landmarker(params, random_weights=True)
        pts, scores = net.predict(np.zeros((2, 120, 160, 3), np.uint8), np.array([[20, 20, 100, 110]] * 2, float))
        assert pts.shape == (2, 68, 2) and scores.shape == (2, 68) and pts.dtype == np.float32
        # untrained FAN gives no plausible face: accept every frame to exercise the rest of the path
        monkeypatch.setattr(align_video_mod, "plausible", lambda lm, *a, **k: np.ones(len(lm), bool))
        out = tmp_path / "fan.npz"
        details = align_video_mod.align_video(video, boxes, tracks, params, net, out)
        assert details["backend"] == "fan" and details["n_frames"] == 30
        monkeypatch.undo()
        fan = list(render_samples("gridt", row, align_video_mod.load_aligned(out, keys), video, None,
                                  lambda p: "h"))
        stage_output = align_video_mod.load_aligned(align.output_path("gridt", row["video_id"]), keys)
        dlib = list(render_samples("gridt", row, stage_output, video, None, lambda p: "h"))

    def shapes(members):
        out = {}
        for name, data in members:
            field = name.split(".", 1)[1]
            if field.endswith("npy"):
                arr = np.load(__import__("io").BytesIO(data), allow_pickle=False)
                out[field] = (arr.dtype, arr.shape[1:])
            else:
                out[field] = sorted(__import__("json").loads(data))
        return out

    assert shapes(fan[0][1]) == shapes(dlib[0][1])
    fan_json = __import__("json").loads(fan[0][1][3][1])
    assert fan_json["landmark_backend"] == "fan" and fan_json["n_frames"] == 30
