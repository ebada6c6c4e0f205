"""Align one video in a single decode: landmarks, gaps, smoothing and transforms (no pixels are kept).

While decoding, each tracked frame gives its 68 landmarks, computed on the region of the frame the landmarker
reads around the tracked box (only that region is converted from the decoder's YUV: media.frame_region).
Once the whole track is known, landmarks are interpolated / split / smoothed and the transforms estimated.
The crop stage renders the mouths later, warping the full frames with the frame -> crop transforms stored
here (preprocess/crop/render.py): one resampling step, and the align output stays small (about 1.5 kB a
frame, 0.14 GB an hour at 25 fps). Memory holds per-frame numbers only (about 2 kB a frame, and float64
working copies of one piece's landmarks while it is smoothed: about 5 kB a frame).

The result is one small .npz per video (uncompressed, fixed zip timestamps: identical inputs give identical
bytes; written atomically), arrays concatenated over the kept pieces:
  piece (T,) int32          index of the kept piece (the sample's <segment> in shard keys)
  track_segment (T,) int32  the track segment it came from;  frame (T,) int32  frame in the 25 fps video
  landmarks_crop (T, 68, 2) float32 (crop pixels, from the raw landmarks)
  landmarks (T, 68, 2) float32 (frame pixels; interpolated where missing), scores (T, 68) float32 (NaN: none)
  transforms (T, 2, 3) float64 frame -> canonical 256x256 face
  crop_transforms (T, 2, 3) float64 frame -> 96x96 mouth crop (transforms moved so the mouth lands centred)
  interpolated (T,) bool (missing or outlying landmarks);  boxes (T, 4) float32;  meta: JSON text (pieces with
  their track fields, QC, outlier_frames)
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from preprocess.fileio import atomic_path
from preprocess.records import SKIPPED, StageFailure, plain
from preprocess.align import geometry, mouth
from preprocess.align.align_params import AlignParams
from preprocess.align.npz import save_npz
from preprocess.align.smoothing import interpolate, landmark_outliers, smooth_landmarks, split_pieces
from preprocess.media import frame_region, iter_video_frames

BOX_COLUMNS = ["x1", "y1", "x2", "y2"]
TRACK_FIELDS = ("sync_method", "sync_offset", "sync_confidence", "speaker_ambiguous", "audio_shift_frames",
                "n_faces")


def make_landmarker(params: AlignParams, fan_weights: Path | None = None, random_weights: bool = False):
    if params.backend == "dlib":
        from preprocess.align.landmarks_dlib import DlibLandmarker

        return DlibLandmarker(refine=params.dlib_refine)
    from preprocess.align.landmarks_fan import FanLandmarker

    return FanLandmarker(fan_weights, params.fan_reference_scale, params.batch_size, random_weights=random_weights)


def plausible(landmarks: np.ndarray, boxes: np.ndarray, scores: np.ndarray | None, min_score: float) -> np.ndarray:
    """Frames whose landmarks look like a face in the box: finite, centred in it, a sane eye distance."""
    ok = np.isfinite(landmarks).all(axis=(1, 2))
    centre = np.nan_to_num(landmarks).mean(1)
    w = np.maximum(boxes[:, 2] - boxes[:, 0], 1.0)
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 1.0)
    ok &= (centre[:, 0] > boxes[:, 0] - 0.25 * w) & (centre[:, 0] < boxes[:, 2] + 0.25 * w)
    ok &= (centre[:, 1] > boxes[:, 1] - 0.25 * h) & (centre[:, 1] < boxes[:, 3] + 0.25 * h)
    eyes = np.linalg.norm(np.nan_to_num(landmarks[:, 45] - landmarks[:, 36]), axis=-1) / w
    ok &= (eyes > 0.15) & (eyes < 1.2)
    if scores is not None:
        ok &= np.nan_to_num(scores.mean(1)) >= min_score
    return ok


def track_predecessors(segment_of: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Per row (sorted by segment, then frame), the row of the frame just before it in the same track segment,
    or -1 (the segment's first frame)."""
    previous = np.arange(-1, len(frames) - 1)
    if len(frames):
        follows = np.r_[False, (segment_of[1:] == segment_of[:-1]) & (np.diff(frames) == 1)]
        previous[~follows] = -1
    return previous


class TrackedLandmarks:
    """The landmarks (and scores) of every tracked row, filled in as the rows' pixels arrive in frame order.

    A chaining landmarker (dlib: `chained`) gets, with each row, the landmarks of its predecessor in its track
    (`previous[row]`, -1: none) where those are plausible for their box, and that box."""

    def __init__(self, landmarker, boxes: np.ndarray, previous: np.ndarray | None = None):
        n = len(boxes)
        self.landmarker, self.boxes = landmarker, np.asarray(boxes, np.float64)
        self.previous = np.full(n, -1) if previous is None else np.asarray(previous, np.int64)
        if self.previous.shape != (n,):
            raise ValueError(f"previous has shape {self.previous.shape} for {n} rows")
        self.chained = bool(getattr(landmarker, "chained", False))
        self.landmarks = np.full((n, 68, 2), np.nan, np.float32)
        self.scores = np.full((n, 68), np.nan, np.float32)
        self.seen = np.zeros(n, bool)
        self.trusted = np.zeros(n, bool)  # landmarks found and plausible for their box: a chain may follow them

    def region(self, row: int) -> tuple[int, int, int, int]:
        """The frame pixels the landmarker reads for `row` (x0, y0, x1, y1): around the tracker's box, and for a
        chained row also around the box it starts from (its predecessor's landmarks must be in by then)."""
        x0, y0, x1, y1 = self.landmarker.region(self.boxes[row])
        prev = self.previous[row]
        if self.chained and prev >= 0 and self.trusted[prev]:
            start = self.landmarker.chained_box(self.landmarks[prev], self.boxes[prev], self.boxes[row])
            a0, b0, a1, b1 = self.landmarker.region(start)
            x0, y0, x1, y1 = min(x0, a0), min(y0, b0), max(x1, a1), max(y1, b1)
        return x0, y0, x1, y1

    def add(self, rows: list[int], pixels: list[np.ndarray], origins: list[tuple[int, int]]) -> None:
        """Predict `rows` from their `pixels`, each array's top-left corner at `origins` (x, y) in the frame."""
        rows = np.asarray(rows, np.int64)
        shift = np.array(origins, np.float64).reshape(-1, 2)
        shift4 = np.concatenate([shift, shift], axis=1)
        boxes = self.boxes[rows] - shift4
        extra = {}
        if self.chained:
            prev = self.previous[rows]
            has = prev >= 0
            has[has] = self.trusted[prev[has]]
            prior = np.full((len(rows), 68, 2), np.nan, np.float32)
            prior_boxes = boxes.copy()
            prior[has] = self.landmarks[prev[has]] - shift[has, None, :].astype(np.float32)
            prior_boxes[has] = self.boxes[prev[has]] - shift4[has]
            extra = {"previous": prior, "previous_boxes": prior_boxes}
        pts, sc = self.landmarker.predict(pixels, boxes, **extra)
        self.landmarks[rows] = pts + shift[:, None, :].astype(np.float32)
        if sc is not None:
            self.scores[rows] = sc
        self.seen[rows] = True
        if self.chained:
            self.trusted[rows] = plausible(self.landmarks[rows], self.boxes[rows], None, 0.0)


    def add_frames(self, frames: np.ndarray, frame_of: np.ndarray) -> None:
        """Every row from in-memory whole frames (row r reads frames[frame_of[r]]), one frame's rows at a time in
        frame order: decode_tracked's order, without a video file (benchmarks, tests)."""
        frame_of = np.asarray(frame_of, np.int64)
        order = np.argsort(frame_of, kind="stable")
        for start, end in _runs(frame_of[order]):
            rows = [int(r) for r in order[start:end]]
            self.add(rows, [frames[frame_of[r]] for r in rows], [(0, 0)] * len(rows))


def _runs(values: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each run of equal values in a sorted array."""
    edges = np.flatnonzero(np.diff(values)) + 1
    return list(zip(np.r_[0, edges].tolist(), np.r_[edges, len(values)].tolist())) if len(values) else []


def decode_tracked(video: Path, frames: np.ndarray, boxes: np.ndarray, params: AlignParams, landmarker,
                   previous: np.ndarray | None = None):
    """One pass over the video: landmarks (and scores) for every tracked frame, `frames` (N,) with their
    `boxes` (N, 4: x1 y1 x2 y2) and `previous` (N,): each row's predecessor in its track (track_predecessors;
    None: none has one).

    Each frame's region (landmarker.region of its box) is cut out and given to the landmarker with the
    box in region pixels. A chaining landmarker gets one decoded frame's rows at a time (each needs its
    predecessor's landmarks); others groups of `params.batch_size` consecutive decoded frames (FAN's forward
    batch)."""
    n = len(frames)
    order = np.argsort(frames, kind="stable")
    found = TrackedLandmarks(landmarker, boxes, previous)
    fmt = "rgb24" if landmarker.wants_rgb else "gray"
    group = 1 if found.chained else max(1, params.batch_size)
    pos, decoded, take, pixels, origins = 0, 0, [], [], []
    for decoded, frame in enumerate(iter_video_frames(video), start=1):
        while pos < n and frames[order[pos]] == decoded - 1:
            row = order[pos]
            region, x0, y0 = frame_region(frame, found.region(row), fmt)
            take.append(row)
            pixels.append(region)
            origins.append((x0, y0))
            pos += 1
        if take and (decoded % group == 0 or pos >= n):
            found.add(take, pixels, origins)
            take, pixels, origins = [], [], []
        if pos >= n:
            break
    if not found.seen.all():
        missing = frames[~found.seen]
        raise StageFailure(f"track boxes name frames up to {int(missing.max())} but the video has only {decoded} "
                           "frames: the track and resample outputs disagree (rerun track)")
    return found.landmarks, found.scores


def align_video(video: Path, boxes: dict[str, np.ndarray], segments: list[dict], params: AlignParams,
                landmarker, out_path: Path) -> dict:
    """Process one video: `boxes` the track's per-frame columns (segment, frame, x1, y1, x2, y2, ...),
    `segments` its per-segment rows (tracks.parquet's, for the sync fields); write `out_path` (.npz) and
    return the figures for its status record."""
    # Sorted by (segment, frame): each segment is one contiguous run of rows.
    order = np.lexsort((boxes["frame"], boxes["segment"]))
    segment_of, frames = boxes["segment"][order].astype(np.int64), boxes["frame"][order].astype(np.int64)
    box_arr = np.stack([boxes[k][order] for k in BOX_COLUMNS], axis=1).astype(np.float64)
    if not len(order):
        raise StageFailure("the track has no frames", status=SKIPPED)
    landmarks, scores = decode_tracked(video, frames, box_arr, params, landmarker,
                                      track_predecessors(segment_of, frames))
    has_scores = bool(np.isfinite(scores).any())
    valid = plausible(landmarks, box_arr, scores if has_scores else None, params.fan_min_score)
    parts, pieces_meta, dropped_gap, dropped_short = _align_pieces(segment_of, frames, box_arr, segments, params,
                                                                   landmarks, scores, valid)
    if not parts:
        if not valid.any():
            raise StageFailure(f"no usable landmarks in any of the {len(order)} tracked frames "
                               f"({landmarker.name})")
        raise StageFailure(f"no piece of at least {params.min_frames} frames is left after splitting at "
                           f"landmark gaps longer than {params.max_gap} frames", status=SKIPPED)
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    total = len(arrays["frame"])
    details = {"n_segments": len(parts), "n_frames": total, "backend": landmarker.name,
               "interpolated_fraction": round(float(arrays["interpolated"].mean()), 6),
               "outlier_frames": sum(m["outlier_frames"] for m in pieces_meta),
               "frames_dropped_gap": int(dropped_gap), "frames_dropped_short": int(dropped_short),
               "mouth_offset_max": max(m["mouth_offset_max"] for m in pieces_meta)}
    meta = {"backend": landmarker.name, "color": params.color, "params": asdict(params), "pieces": pieces_meta}
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
    with atomic_path(out_path) as tmp:
        with open(tmp, "wb") as f:
            save_npz(f, arrays)
    return details


def _align_pieces(segment_of: np.ndarray, frame_of: np.ndarray, box_arr: np.ndarray, segments: list[dict],
                  params: AlignParams, landmarks: np.ndarray, scores: np.ndarray, valid: np.ndarray):
    """Split each segment at long landmark gaps, smooth and estimate the transforms of every kept piece;
    the rows are sorted by (segment, frame). Returns (per-piece arrays, per-piece meta, frames dropped at
    gaps, frames dropped in short pieces)."""
    track_info = {int(r["segment"]): r for r in segments}
    parts, pieces_meta = [], []
    dropped_short = dropped_gap = 0
    starts = np.flatnonzero(np.r_[True, segment_of[1:] != segment_of[:-1]])
    for first, end in zip(starts, np.r_[starts[1:], len(segment_of)]):
        segment, idx = int(segment_of[first]), np.arange(first, end)
        # a frame whose landmarks jump off the segment's trajectory is treated like a missing one
        outlier = landmark_outliers(landmarks[idx], valid[idx], params.smooth_window, params.max_jump)
        seg_valid = valid[idx] & ~outlier
        pieces = split_pieces(seg_valid, params.max_gap)
        kept_frames = sum(e - s for s, e in pieces)
        dropped_gap += len(idx) - kept_frames
        info = track_info.get(int(segment), {})
        for s, e in pieces:
            if e - s < params.min_frames:
                dropped_short += e - s
                continue
            sel = idx[s:e]
            ok = seg_valid[s:e]
            raw = interpolate(landmarks[sel], ok)
            to_can, crop_tf = piece_transforms(raw, params)
            lm_crop = geometry.apply(crop_tf, raw).astype(np.float32)
            frames = frame_of[sel].astype(np.int32)
            if np.any(np.diff(frames) != 1):
                raise StageFailure(f"track segment {segment} is not a run of consecutive frames")
            piece = len(pieces_meta)
            meta = {"segment": piece, "track_segment": int(segment), "start_frame": int(frames[0]),
                    "end_frame": int(frames[-1]) + 1, "n_frames": int(e - s),
                    "interpolated_fraction": round(float((~ok).mean()), 6),
                    "outlier_frames": int(outlier[s:e].sum()), **mouth.qc(lm_crop)}
            meta.update({key: plain(info.get(key)) for key in TRACK_FIELDS})
            pieces_meta.append(meta)
            parts.append({
                "piece": np.full(e - s, piece, np.int32), "track_segment": np.full(e - s, segment, np.int32),
                "frame": frames, "landmarks_crop": lm_crop,
                "landmarks": raw.astype(np.float32), "scores": scores[sel], "transforms": to_can,
                "crop_transforms": crop_tf, "interpolated": ~ok,
                "boxes": box_arr[sel].astype(np.float32),
            })
    return parts, pieces_meta, dropped_gap, dropped_short


def piece_transforms(raw: np.ndarray, params: AlignParams) -> tuple[np.ndarray, np.ndarray]:
    """A piece's gap-free landmarks (T, 68, 2) -> smoothed, then frame -> canonical face and frame -> mouth crop
    transforms (T, 2, 3) each."""
    smooth = smooth_landmarks(raw, params.smoothing, params.smooth_window, params.follow_speed)
    to_canonical = np.stack([geometry.to_canonical(p) for p in smooth])
    return to_canonical, mouth.crop_transforms(to_canonical, smooth)


def load_aligned(path: Path, keys: tuple[str, ...] | None = None) -> tuple[dict, dict]:
    """(arrays, meta) of one align .npz, only `keys` when given (entries load lazily); never unpickles."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in (keys or data.files) if k != "meta"}
        meta = json.loads(str(data["meta"]))
    return arrays, meta
