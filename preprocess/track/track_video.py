"""The track step for one resampled video: detect, cut, track, score against the audio, choose the speaker."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from preprocess.records import SKIPPED, StageFailure
from preprocess.framestore import FrameStore, frame_store
from preprocess.media import iter_i420_batches, read_audio, video_size
from preprocess.track.detect import RetinaFaceBatch, detection_size
from preprocess.track.motion import streamed_motion_energy, wav_envelope
from preprocess.track.track_params import TrackParams
from preprocess.track.shots import ShotCuts
from preprocess.track.sync import Choice, SyncScore, audio_shift_frames, av_energy_score, choose_speakers
from preprocess.track.tracking import Track, build_tracks

BOX_COLUMNS = ["segment", "frame", "x1", "y1", "x2", "y2", "score", "detected"]
MOTION_RUN = 64  # gray frames read back from disk at a time for a track's mouth motion (3 MB at 240x192)


@dataclass
class Decoded:
    """What one decoding pass leaves: detections (full-frame pixels), shot cuts, small gray frames (on disk)."""
    n_frames: int
    width: int
    height: int
    scale_xy: tuple[float, float]  # small frame pixels per full frame pixel
    detections: dict[int, np.ndarray]
    cuts: list[int]
    gray: FrameStore  # T rows (h, w) uint8 at detection size, for the mouth motion; open only inside track_video


def decode_and_detect(video: Path, detector: RetinaFaceBatch, params: TrackParams, gray: FrameStore) -> Decoded:
    """One pass over the video, decoded straight to detection size: detect on every stride-th frame (and the
    last), find cuts.

    The decoder scales each frame in YUV (media.iter_i420_batches), so no full-size frame is converted or
    resized. The luma is the gray frame (for dlib's detector and the mouth motion); colour is made at the
    small size only for what needs it (shot cuts, at half that size; RetinaFace). The small gray frames go to
    `gray` (disk), since the tracks that say where to look are known only at the end.
    """
    width, height = video_size(video)
    if not width or not height:
        raise StageFailure("the resampled video has no frame size in its header (unreadable video stream)")
    size = detection_size(width, height, params.detect_short_side)
    scale_xy = (size[0] / width, size[1] / height)
    wants_rgb = getattr(detector, "wants_rgb", True)
    shots = ShotCuts(params.shots)
    detections: dict[int, np.ndarray] = {}
    start = 0
    last = None
    for batch in iter_i420_batches(video, size, batch=params.batch):
        luma = batch[:, :size[1]]
        shots.feed_bgr(_shot_frames(batch, size))
        gray.append(luma)
        idx = [i for i in range(len(batch)) if (start + i) % params.detect_stride == 0]
        for i, det in zip(idx, detector(_detector_input(batch[idx], luma[idx], wants_rgb))):
            detections[start + i] = _to_full(det, scale_xy)
        start += len(batch)
        last = (batch[-1:], luma[-1:])
    if last is None:
        raise StageFailure("the resampled video has no frames")
    if (start - 1) not in detections:  # the last frame closes the tracks that reach the end
        detections[start - 1] = _to_full(detector(_detector_input(*last, wants_rgb))[0], scale_xy)
    return Decoded(start, width, height, scale_xy, detections, shots.cuts, gray)


def _shot_frames(i420: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """BGR frames at half the detection size for the cut detector: measured on a GRID cut and the shared
    clips, its scores there are those of the detection size to within 0.1 (cut 51.4, no cut at most 2.1,
    threshold 27) at about half the cost."""
    half = (max(1, size[0] // 2), max(1, size[1] // 2))
    return np.stack([cv2.resize(cv2.cvtColor(f, cv2.COLOR_YUV2BGR_I420), half, interpolation=cv2.INTER_AREA)
                     for f in i420])


def _detector_input(i420: np.ndarray, luma: np.ndarray, rgb: bool) -> np.ndarray:
    """RGB frames for detectors that need colour (RetinaFace), the luma for those that do not (dlib's HOG)."""
    if not rgb:
        return luma
    return np.stack([cv2.cvtColor(f, cv2.COLOR_YUV2RGB_I420) for f in i420]) if len(i420) else \
        np.zeros((0, *luma.shape[1:], 3), np.uint8)


def _to_full(det: np.ndarray, scale_xy: tuple[float, float]) -> np.ndarray:
    out = det.astype(np.float32).copy()
    out[:, [0, 2]] /= scale_xy[0]
    out[:, [1, 3]] /= scale_xy[1]
    return out


def faces_at_once(tracks: list[Track], n_frames: int) -> np.ndarray:
    """Per frame, how many tracks cover it."""
    count = np.zeros(n_frames + 1, np.int32)
    for t in tracks:
        count[t.start] += 1
        count[t.end] -= 1
    return np.cumsum(count)[:n_frames]


def energy_scores(decoded: Decoded, tracks: list[Track], envelope: np.ndarray,
                  params: TrackParams) -> list[SyncScore]:
    sx, sy = decoded.scale_xy
    scores = []
    for t in tracks:
        small_boxes = t.boxes * np.array([sx, sy, sx, sy], np.float32)
        runs = ((frames, small_boxes[lo - t.start: lo - t.start + len(frames)])
                for lo, frames in decoded.gray.runs(t.start, t.end, MOTION_RUN))
        motion = streamed_motion_energy(runs)
        scores.append(av_energy_score(motion, envelope[t.start: t.end], params.sync.energy_max_lag))
    return scores


def default_scratch(video: Path) -> Path:
    """Where the gray frames go when the caller names no place: the system's temporary folder."""
    return Path(tempfile.gettempdir()) / f"{video.stem}.track-frames"


@dataclass
class VideoTracks:
    boxes: dict[str, np.ndarray]  # BOX_COLUMNS, one array each: a row per frame of the kept segments
    segments: list[dict]  # one per kept segment, tracks.parquet columns less corpus/video_id
    details: dict  # for the status record


def track_video(video: Path, audio_path: Path | None, params: TrackParams, detector: RetinaFaceBatch,
                syncnet=None, pretrain_real: bool = False, scratch: Path | None = None) -> VideoTracks:
    """Raise StageFailure (plain words) when no usable face track exists; never for poor sync of a fake.

    `scratch`: a path beside which the small gray frames wait on disk while the video is processed (46 kB a
    frame at the default detection size); best the caller's output path, so they go to the data disk rather
    than a possibly RAM-backed temporary folder (the default). The file never outlives the call.
    """
    with frame_store(scratch or default_scratch(video)) as gray:
        decoded = decode_and_detect(video, detector, params, gray)
        n_detected = sum(len(d) > 0 for d in decoded.detections.values())
        if n_detected == 0:
            raise StageFailure("no face found", frames=decoded.n_frames)
        tracks = build_tracks(decoded.detections, decoded.cuts, params.detect_stride, params.tracking)
        if not tracks:
            raise StageFailure(
                f"no face track of at least {params.tracking.min_track_frames} frames with faces of at least "
                f"{params.tracking.min_face_size:g} px", frames=decoded.n_frames, frames_with_faces=n_detected)
        scores = _sync_scores(video, audio_path, decoded, tracks, params, syncnet)
    spans = [(t.start, t.end) for t in tracks]
    sizes = [float(np.median(np.minimum(t.boxes[:, 2] - t.boxes[:, 0], t.boxes[:, 3] - t.boxes[:, 1])))
             for t in tracks]
    choices = choose_speakers(spans, sizes, scores, params.sync)
    at_once = faces_at_once(tracks, decoded.n_frames)

    kept, rejected = [], []
    for choice in choices:
        (rejected if pretrain_real and _too_poor(choice, params) else kept).append(choice)
    details = {"frames": decoded.n_frames, "frames_detected": len(decoded.detections),
               "frames_with_faces": n_detected, "shot_cuts": len(decoded.cuts), "face_tracks": len(tracks),
               "segments": len(kept), "segments_rejected_low_sync": len(rejected),
               "sync_methods": ",".join(sorted({c.method for c in choices})),
               "speaker_ambiguous": any(c.ambiguous for c in kept),
               "sync_confidence": [_round(c.confidence) for c in choices],
               "track_score": [_round(c.score) for c in choices],
               "rival_score": [_round(c.rival_score) for c in choices]}
    if not kept:
        best = max(choices, key=lambda c: c.confidence)
        raise StageFailure(f"audio and lips agree too little for pretraining (best confidence "
                           f"{best.confidence:.2f} via {best.method}, below the pretrain threshold)",
                           status=SKIPPED, **details)
    if details["speaker_ambiguous"]:
        details["note"] = "several faces and no clear speaker: choice flagged ambiguous"

    frames_out, segments = [], []
    for seg, choice in enumerate(kept):
        track = tracks[choice.index]
        frames_out.append(_box_rows(seg, track))
        segments.append(_segment_row(seg, track, choice, int(at_once[track.start: track.end].max()), params))
    boxes = {k: np.concatenate([rows[k] for rows in frames_out]) for k in BOX_COLUMNS}
    return VideoTracks(boxes, segments, details)


def _sync_scores(video: Path, audio_path: Path | None, decoded: Decoded, tracks: list[Track],
                 params: TrackParams, syncnet) -> list[SyncScore] | None:
    if audio_path is None:
        return None
    if syncnet is not None:  # SyncNet takes its own 0.2 s audio windows of each track
        audio = read_audio(audio_path)
        return [syncnet.score(video, t, audio) for t in tracks]
    # The weights-free score needs only the per-frame envelope: 4 bytes a frame instead of 2.5 kB of audio.
    return energy_scores(decoded, tracks, wav_envelope(audio_path), params)


def _too_poor(choice: Choice, params: TrackParams) -> bool:
    limit = (params.pretrain_min_syncnet_confidence if choice.method == "syncnet"
             else params.pretrain_min_energy_correlation)
    return limit is not None and np.isfinite(choice.confidence) and choice.confidence < limit


def _round(x: float) -> float | None:
    return round(float(x), 4) if np.isfinite(x) else None


def _box_rows(segment: int, track: Track) -> dict[str, np.ndarray]:
    n = len(track.boxes)
    return {
        "segment": np.full(n, segment, np.int32),
        "frame": np.arange(track.start, track.end, dtype=np.int32),
        **{k: track.boxes[:, i].astype(np.float32) for i, k in enumerate(["x1", "y1", "x2", "y2"])},
        "score": track.scores.astype(np.float32),
        "detected": track.detected.astype(bool),
    }


def _segment_row(segment: int, track: Track, choice: Choice, n_faces: int, params: TrackParams) -> dict:
    score = SyncScore(choice.method, choice.confidence, choice.offset)
    return {"segment": segment, "start_frame": track.start, "end_frame": track.end, "n_faces": n_faces,
            "sync_method": choice.method, "sync_offset": choice.offset,
            "sync_confidence": float(choice.confidence), "speaker_ambiguous": bool(choice.ambiguous),
            "audio_shift_frames": audio_shift_frames(score, params.sync)}
