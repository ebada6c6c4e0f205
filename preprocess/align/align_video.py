"""Align one video in a single decode: landmarks, gaps, smoothing, transforms and mouth crops.

While decoding, each tracked frame gives (a) its 68 landmarks, computed on the full frame inside the
tracked box, and (b) a face patch (a square around the box, `patch_size` px) kept in a scratch file beside
the output. Once the whole track is known, landmarks are interpolated / split / smoothed, the transforms
estimated, and the mouth crops rendered from the patches, read back a run at a time: no second decode, and
one resampling step more than a direct warp (the patch is at least at canonical scale, so it costs little
sharpness). Memory stays bounded for long videos: patches (83 kB a frame at 288 px gray) and rendered crops
wait on disk, crops and audio are streamed into the .npz; only per-frame numbers (landmarks, transforms,
boxes: about 2 kB a frame, and float64 working copies of one piece's landmarks while it is smoothed: about
5 kB a frame) are held for the whole track. Disk: patch_size^2 bytes a frame (x3 in colour), 96^2 for crops.

The result is one .npz per video (written atomically), arrays concatenated over the kept pieces:
  piece (T,) int32          index of the kept piece (the sample's <segment> in shard keys)
  track_segment (T,) int32  the track segment it came from;  frame (T,) int32  frame in the 25 fps video
  crops (T, 96, 96[, 3]) uint8        landmarks_crop (T, 68, 2) float32 (crop pixels)
  landmarks (T, 68, 2) float32 (frame pixels; interpolated where missing), scores (T, 68) float32 (NaN: none)
  transforms (T, 2, 3) float64 frame -> canonical 256x256 face;  crop_centres (T, 2) float64 (canonical px)
  interpolated (T,) bool;  boxes (T, 4) float32;  audio (T, 640) int16 (16 kHz, shifted by the track's
  audio_shift_frames, zeros where there is none);  meta: JSON text (pieces with their track fields, QC)
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from preprocess.fileio import atomic_path
from preprocess.records import SKIPPED, StageFailure
from preprocess.align import geometry, mouth
from preprocess.contract import SAMPLES_PER_FRAME
from preprocess.align.align_params import AlignParams
from preprocess.align.npz import Chunked, save_npz
from preprocess.align.smoothing import interpolate, smooth_landmarks, split_pieces
from preprocess.framestore import FrameStore, frame_store
from preprocess.media import Pcm16, iter_frame_batches

RUN = 256  # frames of crops or audio handled at a time after decoding (2.4 MB of crops, 0.3 MB of audio)
PATCH_RUN = 32  # face patches read back at a time: 2.7 MB at 288 px gray
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


def _segment_audio(audio: Pcm16 | None, start: int, end: int, shift: int) -> np.ndarray:
    """(end - start, 640) int16 audio of frames [start, end) shifted by `shift` frames; zeros where there is none."""
    n = end - start
    out = np.zeros(n * SAMPLES_PER_FRAME, np.int16)
    if audio is None:
        return out.reshape(n, SAMPLES_PER_FRAME)
    a0, a1 = (start + shift) * SAMPLES_PER_FRAME, (end + shift) * SAMPLES_PER_FRAME
    s0, s1 = max(a0, 0), min(a1, audio.n_samples)
    if s1 > s0:
        out[s0 - a0:s1 - a0] = audio.read(s0, s1)
    return out.reshape(n, SAMPLES_PER_FRAME)


def _audio_runs(audio: Pcm16 | None, spans: list[tuple[int, int, int]]):
    """The audio of every kept piece (start, end, shift), in order, a run of frames at a time."""
    for start, end, shift in spans:
        for lo in range(start, end, RUN):
            yield _segment_audio(audio, lo, min(end, lo + RUN), shift)


def patch_shape(params: AlignParams) -> tuple[int, ...]:
    ps = params.patch_size
    return (ps, ps, 3) if params.color else (ps, ps)


def decode_tracked(video: Path, rows: pd.DataFrame, params: AlignParams, landmarker, patches: FrameStore):
    """One pass over the video: landmarks for every row (one tracked frame) of `rows`, and its face patch
    written to `patches` at the row's index."""
    n = len(rows)
    frames = rows["frame"].to_numpy(np.int64)
    boxes = rows[BOX_COLUMNS].to_numpy(np.float64)
    order = np.argsort(frames, kind="stable")
    rgb = landmarker.wants_rgb or params.color
    ps = params.patch_size
    patch_tf = np.stack([geometry.box_patch_transform(b, ps, params.patch_scale) for b in boxes]) if n else \
        np.zeros((0, 2, 3))
    landmarks = np.full((n, 68, 2), np.nan, np.float32)
    scores = np.full((n, 68), np.nan, np.float32)
    seen = np.zeros(n, bool)
    pos, first = 0, 0
    for batch in iter_frame_batches(video, batch=max(1, params.batch_size), gray=not rgb):
        last = first + len(batch)
        take = []
        while pos < n and frames[order[pos]] < last:
            if frames[order[pos]] >= first:
                take.append(order[pos])
            pos += 1
        if take:
            take = np.array(take)
            local = batch[frames[take] - first]
            lm_frames = local if (landmarker.wants_rgb or local.ndim == 3) else \
                np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in local])
            pts, sc = landmarker.predict(lm_frames, boxes[take])
            landmarks[take] = pts
            if sc is not None:
                scores[take] = sc
            for row, frame in zip(take, local):
                patch = cv2.warpAffine(frame, patch_tf[row], (ps, ps), flags=cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_REPLICATE)
                if patch.ndim == 3 and not params.color:
                    patch = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY)
                patches.put(int(row), patch[None])
            seen[take] = True
        first = last
        if pos >= n:
            break
    if not seen.all():
        missing = frames[~seen]
        raise StageFailure(f"track boxes name frames up to {int(missing.max())} but the video has only {first} "
                           "frames: the track and resample outputs disagree (rerun track)")
    return landmarks, scores, patch_tf


def render_crops(patches: FrameStore, patch_tf: np.ndarray, crop_tf: np.ndarray, first: int,
                 crops: FrameStore) -> None:
    """Mouth crops of rows [first, first + len(crop_tf)) appended to `crops`, a run of patches at a time."""
    for lo, run in patches.runs(first, first + len(crop_tf), PATCH_RUN):
        k = slice(lo - first, lo - first + len(run))
        crops.append(mouth.render(run, patch_tf[lo:lo + len(run)], crop_tf[k]))


def align_video(video: Path, audio_path: Path | None, boxes: pd.DataFrame, tracks: pd.DataFrame,
                params: AlignParams, landmarker, out_path: Path) -> dict:
    """Process one video; write `out_path` (.npz) and return the figures for its status record."""
    # Sorted by (segment, frame) with a fresh index: each segment is one contiguous run of rows, so its
    # patches and crops are contiguous runs in the scratch stores.
    boxes = boxes.sort_values(["segment", "frame"], kind="stable").reset_index(drop=True)
    if boxes.empty:
        raise StageFailure("the track has no frames", status=SKIPPED)
    crop_shape = (mouth.CROP, mouth.CROP, 3) if params.color else (mouth.CROP, mouth.CROP)
    with frame_store(out_path.with_name(out_path.stem + ".patches"), patch_shape(params)) as patches, \
            frame_store(out_path.with_name(out_path.stem + ".crops"), crop_shape) as crops:
        landmarks, scores, patch_tf = decode_tracked(video, boxes, params, landmarker, patches)
        box_arr = boxes[BOX_COLUMNS].to_numpy(np.float64)
        has_scores = bool(np.isfinite(scores).any())
        valid = plausible(landmarks, box_arr, scores if has_scores else None, params.fan_min_score)
        try:
            audio = Pcm16(audio_path) if audio_path is not None and audio_path.exists() else None
        except ValueError as exc:
            raise StageFailure(str(exc)) from None
        parts, pieces_meta, dropped_gap, dropped_short = _align_pieces(
            boxes, tracks, params, landmarks, scores, valid, patches, patch_tf, crops)
        if not parts:
            if not valid.any():
                raise StageFailure(f"no usable landmarks in any of the {len(boxes)} tracked frames "
                                   f"({landmarker.name})")
            raise StageFailure(f"no piece of at least {params.min_frames} frames is left after splitting at "
                               f"landmark gaps longer than {params.max_gap} frames", status=SKIPPED)
        arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k != "span"}
        total = len(arrays["frame"])
        spans = [p["span"] for p in parts]
        # Big per-frame arrays go straight from disk (crops) and the wav file (audio) into the .npz.
        arrays = _insert_after(arrays, "frame", "crops", Chunked(
            (total, *crop_shape), np.uint8, lambda: (run for _, run in crops.runs(0, crops.rows, RUN))))
        arrays["audio"] = Chunked((total, SAMPLES_PER_FRAME), np.int16, lambda: _audio_runs(audio, spans))
        details = {"n_segments": len(parts), "n_frames": total, "backend": landmarker.name,
                   "has_audio": audio is not None,
                   "interpolated_fraction": round(float(arrays["interpolated"].mean()), 6),
                   "frames_dropped_gap": int(dropped_gap), "frames_dropped_short": int(dropped_short),
                   "mouth_offset_max": max(m["mouth_offset_max"] for m in pieces_meta)}
        meta = {"backend": landmarker.name, "has_audio": audio is not None, "color": params.color,
                "params": asdict(params), "pieces": pieces_meta}
        arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
        with atomic_path(out_path) as tmp:
            with open(tmp, "wb") as f:
                save_npz(f, arrays)
    if audio is None:
        details["note"] = "no audio: the samples carry silent (zero) audio"
    return details


def _insert_after(arrays: dict, after: str, key: str, value) -> dict:
    """`arrays` with `key` placed right after `after`: the .npz keeps its documented member order."""
    out = {}
    for k, v in arrays.items():
        out[k] = v
        if k == after:
            out[key] = value
    return out


def _align_pieces(boxes: pd.DataFrame, tracks: pd.DataFrame, params: AlignParams, landmarks: np.ndarray,
                  scores: np.ndarray, valid: np.ndarray, patches: FrameStore, patch_tf: np.ndarray,
                  crops: FrameStore):
    """Split each segment at long landmark gaps, smooth, estimate transforms and render every kept piece's
    crops into `crops` (in output order). Returns (per-piece arrays, per-piece meta, frames dropped at gaps,
    frames dropped in short pieces)."""
    box_arr = boxes[BOX_COLUMNS].to_numpy(np.float64)
    track_info = {int(r["segment"]): r for r in tracks.to_dict("records")}
    parts, pieces_meta = [], []
    dropped_short = dropped_gap = 0
    for segment, rows in boxes.groupby("segment", sort=True):
        idx = rows.index.to_numpy()
        seg_valid = valid[idx]
        pieces = split_pieces(seg_valid, params.max_gap)
        kept_frames = sum(e - s for s, e in pieces)
        dropped_gap += len(idx) - kept_frames
        info = track_info.get(int(segment), {})
        shift = int(info.get("audio_shift_frames") or 0)
        for s, e in pieces:
            if e - s < params.min_frames:
                dropped_short += e - s
                continue
            sel = idx[s:e]
            ok = seg_valid[s:e]
            raw = interpolate(landmarks[sel], ok)
            smooth = smooth_landmarks(raw, params.smoothing, params.smooth_window, params.follow_speed)
            to_can = np.stack([geometry.to_canonical(p) for p in smooth])
            crop_tf, centres = mouth.crop_transforms(to_can, smooth)
            lm_crop = geometry.apply(crop_tf, raw).astype(np.float32)
            frames = rows["frame"].to_numpy(np.int32)[s:e]
            if np.any(np.diff(frames) != 1):
                raise StageFailure(f"track segment {segment} is not a run of consecutive frames")
            render_crops(patches, patch_tf, crop_tf, int(sel[0]), crops)
            piece = len(pieces_meta)
            meta = {"segment": piece, "track_segment": int(segment), "start_frame": int(frames[0]),
                    "end_frame": int(frames[-1]) + 1, "n_frames": int(e - s),
                    "interpolated_fraction": round(float((~ok).mean()), 6), **mouth.qc(lm_crop)}
            for key in TRACK_FIELDS:
                value = info.get(key)
                meta[key] = None if value is None or (isinstance(value, float) and np.isnan(value)) else \
                    (value.item() if hasattr(value, "item") else value)
            pieces_meta.append(meta)
            parts.append({
                "piece": np.full(e - s, piece, np.int32), "track_segment": np.full(e - s, segment, np.int32),
                "frame": frames, "landmarks_crop": lm_crop,
                "landmarks": raw.astype(np.float32), "scores": scores[sel], "transforms": to_can,
                "crop_centres": centres, "interpolated": ~ok, "boxes": box_arr[sel].astype(np.float32),
                "span": (int(frames[0]), int(frames[-1]) + 1, shift),
            })
    return parts, pieces_meta, dropped_gap, dropped_short


def load_aligned(path: Path, keys: tuple[str, ...] | None = None) -> tuple[dict, dict]:
    """(arrays, meta) of one align .npz, only `keys` when given (entries load lazily); never unpickles."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in (keys or data.files) if k != "meta"}
        meta = json.loads(str(data["meta"]))
    return arrays, meta
