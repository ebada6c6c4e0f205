"""Face tracks from per-frame detections: IoU linking across bounded gaps, shot cuts, gap filling, smoothing.

Pure functions on arrays; boxes are (x1, y1, x2, y2) in pixels. Detection may run on every `stride`-th frame:
frames in between get boxes interpolated from the detections around them (and detected=False).
"""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class TrackingParams:
    iou_threshold: float = 0.5  # syncnet_python: IoU > 0.5 links boxes
    max_gap: int = 25  # frames without a detection a track may bridge (syncnet_python: 25)
    min_track_frames: int = 25  # shorter tracks (and segments) are dropped: one 1-s clip is the least used
    min_face_size: float = 64.0  # px, median box side in the resampled frame (resample's min_side)
    smooth_frames: int = 7  # centred median window over box centre and size, then a mean of 3
    bridge_gaps: bool = True  # True: a bridged gap stays inside the segment, its frames marked detected=False;
    # False: every missed detection splits the track into separate segments


@dataclass
class Track:
    """One face over consecutive frames: per frame a box, the detector score (NaN if none) and detected flag."""
    start: int  # first frame
    boxes: np.ndarray  # (T, 4) float32
    scores: np.ndarray  # (T,) float32
    detected: np.ndarray  # (T,) bool
    shot: int = 0

    @property
    def end(self) -> int:  # exclusive
        return self.start + len(self.boxes)

    def slice(self, lo: int, hi: int) -> "Track":
        """Frames lo..hi-1 (absolute indices)."""
        a, b = lo - self.start, hi - self.start
        return Track(lo, self.boxes[a:b], self.scores[a:b], self.detected[a:b], self.shot)


@dataclass
class _Open:
    frames: list = field(default_factory=list)
    boxes: list = field(default_factory=list)
    scores: list = field(default_factory=list)
    shot: int = 0


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in `a` (N, 4+) with every box in `b` (M, 4+)."""
    a, b = np.asarray(a, np.float64)[:, None, :4], np.asarray(b, np.float64)[None, :, :4]
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def link_detections(detections: dict[int, np.ndarray], cuts: list[int], params: TrackingParams,
                    stride: int = 1) -> list[_Open]:
    """Greedy IoU linking in frame order; a shot cut closes every open track.

    `detections` maps a detected frame index to its (n, 5) boxes+scores. Each detection joins the open track
    whose last box overlaps it most (IoU above the threshold, at most max_gap missed frames ago). With a
    detection stride, the frames nobody looked at between two detections count as unknown, not as missed.
    """
    cuts = sorted(cuts)
    open_tracks: list[_Open] = []
    closed: list[_Open] = []
    for frame in sorted(detections):
        shot = bisect_right(cuts, frame)
        still = []
        for tr in open_tracks:
            if tr.shot != shot or frame - tr.frames[-1] > params.max_gap + stride:
                closed.append(tr)
            else:
                still.append(tr)
        open_tracks = still
        dets = detections[frame]
        if len(dets) == 0:
            continue
        used_det: set[int] = set()
        if open_tracks:
            ious = iou_matrix(np.array([t.boxes[-1] for t in open_tracks]), dets)
            for flat in np.argsort(-ious, axis=None):
                ti, di = divmod(int(flat), len(dets))
                if ious[ti, di] <= params.iou_threshold:
                    break
                tr = open_tracks[ti]
                if di in used_det or tr.frames[-1] == frame:
                    continue
                tr.frames.append(frame)
                tr.boxes.append(dets[di, :4])
                tr.scores.append(dets[di, 4])
                used_det.add(di)
        for di in range(len(dets)):
            if di not in used_det:
                open_tracks.append(_Open([frame], [dets[di, :4]], [dets[di, 4]], shot))
    return sorted(closed + open_tracks, key=lambda t: (t.frames[0], t.boxes[0][0]))


def densify(raw: _Open, stride: int) -> Track:
    """Every frame from the first to the last detection: boxes interpolated linearly where not detected."""
    frames = np.asarray(raw.frames)
    boxes = np.asarray(raw.boxes, np.float64)
    start, end = int(frames[0]), int(frames[-1]) + 1
    allf = np.arange(start, end)
    dense = np.stack([np.interp(allf, frames, boxes[:, k]) for k in range(4)], axis=1)
    scores = np.full(len(allf), np.nan, np.float32)
    scores[frames - start] = raw.scores
    detected = np.zeros(len(allf), bool)
    detected[frames - start] = True
    return Track(start, dense.astype(np.float32), scores, detected, raw.shot)


def extend_to_shot_edges(track: Track, cuts: list[int], stride: int) -> Track:
    """With a stride, a shot may start (or end) between two detections: hold the nearest box to the cut.

    Those frames were not looked at, and the face is on screen from the cut on, so they belong to the track.
    """
    start, end = track.start, track.end
    for cut in cuts:
        if start - stride < cut < start:
            start = cut
        if end < cut < end + stride:
            end = cut
    if (start, end) == (track.start, track.end):
        return track
    before, after = track.start - start, end - track.end
    return Track(start,
                 np.concatenate([np.repeat(track.boxes[:1], before, 0), track.boxes,
                                 np.repeat(track.boxes[-1:], after, 0)]),
                 np.concatenate([np.full(before, np.nan, np.float32), track.scores,
                                 np.full(after, np.nan, np.float32)]),
                 np.concatenate([np.zeros(before, bool), track.detected, np.zeros(after, bool)]),
                 track.shot)


def smooth_boxes(boxes: np.ndarray, window: int) -> np.ndarray:
    """Centred median (drops single-frame outliers) then a short mean (removes jitter) on centre and size."""
    if window <= 1 or len(boxes) < 3:
        return boxes
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    comps = np.stack([cx, cy, w, h], axis=1).astype(np.float64)
    cx, cy, w, h = mean3_rows(median_rows(comps, min(window, len(boxes)))).T
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)


# The two filters are scipy.ndimage's median_filter(size=(k, 1)) and uniform_filter1d(size=3, axis=0), mode
# "nearest", written out bit for bit (checked on random series): importing scipy.ndimage costs the track
# stage 0.2 s, the filters on a track's few hundred boxes a fraction of a millisecond.
def median_rows(x: np.ndarray, k: int) -> np.ndarray:
    """Per column, the median of the k rows around each row (edges repeated; for an even k the upper one)."""
    before = k // 2
    padded = np.pad(x, ((before, k - 1 - before), (0, 0)), mode="edge")
    return np.sort(np.lib.stride_tricks.sliding_window_view(padded, k, axis=0), axis=-1)[..., k // 2]


def mean3_rows(x: np.ndarray) -> np.ndarray:
    """Per column, the mean of each row and its two neighbours (edges repeated), as a running sum."""
    padded = np.pad(x, ((1, 1), (0, 0)), mode="edge")
    first = 0.0 + padded[0] + padded[1] + padded[2]
    return np.cumsum(np.concatenate([first[None], padded[3:] - padded[:-3]]), axis=0) / 3


def split_at_gaps(track: Track, stride: int) -> list[Track]:
    """Runs of frames between missed detections (a gap: consecutive detections more than `stride` apart)."""
    det = np.flatnonzero(track.detected) + track.start
    breaks = np.flatnonzero(np.diff(det) > stride)
    starts = np.concatenate([[det[0]], det[breaks + 1]])
    ends = np.concatenate([det[breaks], [det[-1]]]) + 1
    return [track.slice(int(a), int(b)) for a, b in zip(starts, ends)]


def build_tracks(detections: dict[int, np.ndarray], cuts: list[int], stride: int,
                 params: TrackingParams) -> list[Track]:
    """Linked, size-filtered, gap-handled, smoothed tracks, each at least min_track_frames long."""
    out = []
    for raw in link_detections(detections, cuts, params, stride):
        sizes = np.asarray(raw.boxes)
        side = np.median(np.minimum(sizes[:, 2] - sizes[:, 0], sizes[:, 3] - sizes[:, 1]))
        if side < params.min_face_size:
            continue
        track = extend_to_shot_edges(densify(raw, stride), cuts, stride) if stride > 1 else densify(raw, stride)
        pieces = [track] if params.bridge_gaps else split_at_gaps(track, stride)
        for piece in pieces:
            if len(piece.boxes) >= params.min_track_frames:
                piece.boxes = smooth_boxes(piece.boxes, params.smooth_frames)
                out.append(piece)
    return sorted(out, key=lambda t: (t.start, float(t.boxes[0, 0])))
