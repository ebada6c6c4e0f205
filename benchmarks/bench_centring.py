"""Mouth centring and jitter of the align stage's crops, on still and moving heads, per smoothing method.

Still clips: the shared GRID and CREMA-D clips as decoded (CREMA-D at its own 29.97 fps: the figures are per
frame). Moving clips: the same frames panned on a larger canvas along a known path (a smoothed triangle wave:
up to 3.5 px/frame across, 2 px/frame down, direction changes turned in 8 frames), as a head moving about;
optionally also zooming (--zoom) and rolling (--roll) slowly about the frame centre.

Each clip goes through the align stage's own steps: faces found by dlib's HOG detector on every frame, the
dlib landmarker (refined boxes, as align.backend dlib), `plausible`, the outlier test (`landmark_outliers`,
align.max_jump), `interpolate`, the smoothing under test, `geometry.to_canonical` and `mouth.crop_transforms`.
--plant N moves the landmarks of N frames per clip onto the chin (the mouth centre onto point 8), as on a
held-out CREMA-D clip; each figure is then given with the outlier test off (max_jump 0) and on.
Measured per frame, in 96x96 crop pixels:
  offset  distance from the crop centre to the mouth centre (mean of points 48-67) given by landmarks found
          independently on the full frame: dlib again, on the detector's own box without refinement, unsmoothed,
          mapped through the same crop transform;
  jitter  frame-to-frame movement of the crop centre, taken back through the known motion into the original
          frame and scaled to crop px:
          the RMS over frames of its first difference. A still clip's own small head motion counts too;
  stored  distance from the stored landmarks' mouth centre (landmarks.npy in the shards) to the reference one.

--hd 1080 --cap 720: each clip (still and moving) upscaled (bicubic) to a 1080-px shorter side, then aligned twice,
at that size and after resample.max_short_side's area downscale to 720 (transforms taken back to the 1080 frame);
the reference landmarks are found on the 1080 frames in both cases (follow smoothing only).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_centring.py [--clips 9] [--frames 75] [--plant 1]
    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_centring.py --hd 1080 --cap 720
    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_centring.py --stride 3   # on the track stage's boxes

--stride N: the landmarker reads boxes made as the track stage makes them (HOG at track.detect_short_side on
every N-th frame, tracks filled in and smoothed) instead of the reference detector's; compare N to the shipped
track.detect_stride before changing it.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from preprocess.align import geometry, mouth  # noqa: E402
from preprocess.align.landmarks_dlib import DlibLandmarker  # noqa: E402
from preprocess.align.smoothing import interpolate, landmark_outliers, local_quadratic  # noqa: E402
from preprocess.align.align_params import AlignParams  # noqa: E402
from preprocess.align.align_video import TrackedLandmarks, piece_transforms, plausible  # noqa: E402
from preprocess.media import read_frames  # noqa: E402
from preprocess.track.track_params import TrackParams  # noqa: E402

TESTDATA = ROOT.parent / "shared" / "testdata"
SPEED = (3.5, 2.0)  # px/frame across, down
LEG = (25, 30)  # frames between direction changes across, down
TURN = 8  # frames a direction change takes
PASSES = [0, 0]  # dlib predictor runs of the align stage's landmarker, tracked frames (every landmarks_of call)


def pan_path(n: int, speed=SPEED, leg=LEG, turn: int = TURN) -> np.ndarray:
    """(n, 2) known offsets (px) of a head panned to and fro: constant speed legs, smooth direction changes."""
    t = np.arange(n + turn)
    out = []
    for v, length in zip(speed, leg):
        square = np.where((t // length) % 2 == 0, v, -v).astype(np.float64)
        window = np.hanning(turn + 2)[1:-1]
        vel = np.convolve(square, window / window.sum(), mode="full")[turn // 2:turn // 2 + n]
        vel[: turn // 2] = v  # no ramp-up from rest at the start: the head is already moving
        out.append(np.concatenate([[0.0], np.cumsum(vel[:-1])]))
    path = np.stack(out, axis=1)
    return path - path.min(0)


def pan_motion(path: np.ndarray, size: tuple[int, int], zoom: float = 0.0, turn_deg: float = 0.0) -> np.ndarray:
    """(T, 2, 3) known frame -> canvas transforms: the pan `path`, optionally with a slow zoom (scale 1 +- zoom)
    and head roll (+- turn_deg) about the frame centre, shifted so that everything lands on the canvas."""
    w, h = size
    t = np.arange(len(path))
    scale = 1.0 + zoom * np.sin(2 * np.pi * t / 50)
    angle = np.deg2rad(turn_deg) * np.sin(2 * np.pi * t / 40)
    pad = np.ceil(zoom * max(w, h) / 2 + np.sin(np.deg2rad(turn_deg)) * max(w, h) / 2)
    out = np.zeros((len(path), 2, 3))
    for i in range(len(path)):
        rot = cv2.getRotationMatrix2D((w / 2, h / 2), np.rad2deg(angle[i]), scale[i])
        out[i] = rot
        out[i, :, 2] += path[i] + pad
    return out


def pan_frames(frames: np.ndarray, motion: np.ndarray) -> np.ndarray:
    """Each frame warped onto a canvas holding the whole motion (sub-pixel, bilinear; edges replicated).

    motion: (T, 2, 3) frame -> canvas transforms, or a (T, 2) pan path (pure translations)."""
    h, w = frames.shape[1:3]
    if motion.ndim == 2:
        motion = pan_motion(motion, (w, h))
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float64)
    reach = np.concatenate([geometry.apply(m, corners) for m in motion]).max(0)
    cw, ch = (int(v) for v in np.ceil(reach) + 1)
    out = np.empty((len(frames), ch, cw), np.uint8)
    for i, (frame, m) in enumerate(zip(frames, motion)):
        out[i] = cv2.warpAffine(frame, m, (cw, ch), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out


def resized(frames: np.ndarray, short_side: int, interpolation: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames scaled to `short_side` (even sizes, as resample's scale filter) and the old -> new frame transform
    (pixel centres: x' = (x + 0.5) s - 0.5)."""
    h, w = frames.shape[1:3]
    s = short_side / min(h, w)
    size = (int(round(w * s / 2)) * 2, int(round(h * s / 2)) * 2)
    sx, sy = size[0] / w, size[1] / h
    out = np.stack([cv2.resize(f, size, interpolation=interpolation) for f in frames])
    return out, np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]])


@dataclass
class Landmarks:
    raw: np.ndarray  # (T, 68, 2) the align stage's landmarker's, planted outliers included
    valid: np.ndarray  # (T,) plausible
    reference: np.ndarray  # (T, 68, 2) independent per-frame landmarks (NaN where no face was found)
    planted: np.ndarray  # (T,) bool: frames whose landmarks were moved onto the chin

    def usable(self, max_jump: float = AlignParams().max_jump, window: int = AlignParams().smooth_window):
        """(landmarks as the align stage keeps them: implausible and outlying frames interpolated, outliers)."""
        outliers = landmark_outliers(self.raw, self.valid, window, max_jump)
        return interpolate(self.raw, self.valid & ~outliers), outliers

    @property
    def aligned(self) -> np.ndarray:
        return self.usable()[0]


def detect_boxes(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Largest dlib HOG face per frame (x1 y1 x2 y2) and whether one was found; misses hold the last box."""
    import dlib

    detector = dlib.get_frontal_face_detector()
    boxes = np.zeros((len(frames), 4))
    found = np.zeros(len(frames), bool)
    last = None
    for i, frame in enumerate(frames):
        faces = detector(np.ascontiguousarray(frame), 0)
        if len(faces):
            f = max(faces, key=lambda r: r.width() * r.height())
            last = np.array([f.left(), f.top(), f.right(), f.bottom()], np.float64)
            found[i] = True
        if last is not None:
            boxes[i] = last
    if not found.any():
        raise ValueError("no face found in any frame")
    first = int(np.argmax(found))
    boxes[:first] = boxes[first]
    return boxes, found


def tracked_boxes(frames: np.ndarray, stride: int, short_side: int) -> np.ndarray:
    """(T, 4) boxes as the track stage makes them: dlib's HOG on frames shrunk to `short_side` (area filter),
    every `stride`-th frame and the last, linked, filled in and smoothed by build_tracks (the shipped track
    params); the longest track's, NaN outside it (the align stage never sees those frames). The detection
    frames are shrunk with OpenCV's area filter, the stage's with the decoder's scaler."""
    from preprocess.track.detect import DlibHogDetector, detection_size
    from preprocess.track.tracking import build_tracks

    params = TrackParams()
    size = detection_size(frames.shape[2], frames.shape[1], short_side)
    scale = np.array([frames.shape[2] / size[0], frames.shape[1] / size[1]] * 2 + [1.0], np.float32)
    detector = DlibHogDetector(params.detect)
    wanted = sorted(set(range(0, len(frames), stride)) | {len(frames) - 1})
    small = [cv2.resize(frames[i], size, interpolation=cv2.INTER_AREA) for i in wanted]
    detections = {i: det * scale for i, det in zip(wanted, detector(np.stack(small)))}
    tracks = build_tracks(detections, [], stride, params.tracking)
    if not tracks:
        raise ValueError(f"no face track at detect_stride {stride}")
    track = max(tracks, key=lambda t: t.end - t.start)
    boxes = np.full((len(frames), 4), np.nan)
    boxes[track.start:track.end] = track.boxes
    return boxes


def landmarks_of(frames: np.ndarray, plant: int = 0, seed: int = 0,
                 stride: int | None = None, detect_short_side: int | None = None) -> Landmarks:
    """`stride` None: the landmarker reads the reference detector's boxes (every frame, full size); a number:
    the track stage's boxes at that detect_stride, detected at `detect_short_side` (tracked_boxes). The
    reference is the same either way."""
    boxes, found = detect_boxes(frames)
    track_boxes = boxes if stride is None else tracked_boxes(frames, stride, detect_short_side)
    tracked = np.isfinite(track_boxes).all(1)
    found &= tracked  # frames outside the track are not measured (their crops are never made)
    track_boxes = np.where(tracked[:, None], track_boxes, boxes)  # landmarks for them only keep shapes whole
    plain = DlibLandmarker(refine=False)
    # as the align stage: frames in order, each chained to the one before it where both are in the track
    previous = np.where(tracked & np.r_[False, tracked[:-1]], np.arange(-1, len(frames) - 1), -1)
    chain = TrackedLandmarks(DlibLandmarker(refine=True), track_boxes, previous)
    for i in range(len(frames)):
        before = chain.landmarker.passes
        chain.add([i], [frames[i]], [(0, 0)])
        if tracked[i]:  # the stage predicts tracked frames only
            PASSES[0] += chain.landmarker.passes - before
            PASSES[1] += 1
    raw = chain.landmarks
    reference = plain.predict(frames, boxes)[0].astype(np.float64)
    reference[~found] = np.nan
    planted = np.zeros(len(frames), bool)
    if plant:  # frames spread over the clip, none at its very ends, at least 5 apart
        slots = np.random.default_rng(seed).choice(np.arange(2, len(frames) - 2, 5), plant, replace=False)
        planted[slots] = True
        raw[slots] += raw[slots, 8:9] - raw[slots, geometry.MOUTH_POINTS].mean(1, keepdims=True)
    return Landmarks(raw, plausible(raw, track_boxes, None, 0.0), reference, planted)


def crop_transforms(raw: np.ndarray, method: str, half_window: int = 6, speed: float = 1.5) -> np.ndarray:
    """The align stage's frame -> crop transforms (T, 2, 3) under one smoothing method (its own code)."""
    if method == "savgol2":  # the plain order-2 Savitzky-Golay filter, for comparison only
        smooth = local_quadratic(raw, half_window)
        return mouth.crop_transforms(np.stack([geometry.to_canonical(p) for p in smooth]), smooth)
    params = AlignParams(smoothing=method, smooth_window=half_window, follow_speed=speed)
    return piece_transforms(raw, params)[1]


def mouth_offsets(crop_tf: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(T,) crop px from the crop centre to the reference mouth centre (NaN where there is no reference)."""
    centre = geometry.apply(crop_tf, reference[:, geometry.MOUTH_POINTS]).mean(1)
    return np.linalg.norm(centre - mouth.HALF, axis=-1)


def centre_steps(crop_tf: np.ndarray, motion: np.ndarray | None) -> np.ndarray:
    """(T-1,) frame-to-frame movement (crop px) of the crop centre, taken back through the known motion
    (a (T, 2) pan path or (T, 2, 3) frame -> canvas transforms) into the original frame."""
    if motion is not None and motion.ndim == 2:
        motion = np.stack([np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]]) for dx, dy in motion])
    if motion is not None:
        crop_tf = np.stack([geometry.compose(c, m) for c, m in zip(crop_tf, motion)])  # original frame -> crop
    centres = np.stack([geometry.apply(geometry.invert(m), np.array([mouth.HALF, mouth.HALF])) for m in crop_tf])
    scale = np.sqrt(np.abs(np.linalg.det(crop_tf[:, :, :2])))  # crop px per frame px
    return np.linalg.norm(np.diff(centres, axis=0), axis=-1) * scale[1:]


def stored_offsets(aligned: np.ndarray, crop_tf: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(T,) crop px from the stored landmarks' mouth centre to the reference one (NaN where no reference)."""
    mouths = [geometry.apply(crop_tf, pts[:, geometry.MOUTH_POINTS]).mean(1) for pts in (aligned, reference)]
    return np.linalg.norm(mouths[0] - mouths[1], axis=-1)


def summary(offsets: list[np.ndarray], steps: list[np.ndarray], stored: list[np.ndarray]) -> dict:
    off = np.concatenate(offsets)
    off = off[np.isfinite(off)]
    st = np.concatenate(steps)
    lm = np.concatenate(stored)
    return {"median": float(np.median(off)), "p95": float(np.percentile(off, 95)), "worst": float(off.max()),
            "jitter": float(np.sqrt(np.mean(st ** 2))), "stored": float(np.nanmax(lm))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=9, help="first n of the 6 GRID + 3 CREMA-D clips")
    ap.add_argument("--frames", type=int, default=75, help="frames per clip (from the start)")
    ap.add_argument("--window", type=int, default=6, help="align.smooth_window")
    ap.add_argument("--speed", type=float, default=1.5, help="align.follow_speed")
    ap.add_argument("--max-jump", type=float, default=AlignParams().max_jump, help="align.max_jump")
    ap.add_argument("--plant", type=int, default=0, help="frames per clip whose landmarks are moved onto the chin")
    ap.add_argument("--zoom", type=float, default=0.0, help="moving clips also zoom by 1 +- this (e.g. 0.1)")
    ap.add_argument("--roll", type=float, default=0.0, help="moving clips also roll by +- this many degrees")
    ap.add_argument("--hd", type=int, help="upscale every clip to this shorter side first")
    ap.add_argument("--cap", type=int, help="with --hd: also align after an area downscale to this shorter side")
    ap.add_argument("--stride", type=int, help="landmarks on the track stage's boxes at this track.detect_stride "
                    "(detection at track.detect_short_side, tracks filled in between) instead of the reference "
                    "detector's every-frame boxes")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    clips = (sorted((TESTDATA / "grid").glob("*.mpg")) + sorted((TESTDATA / "cremad").glob("*.flv")))[:args.clips]
    if not clips:
        sys.exit(f"no clips in {TESTDATA}")
    methods = ("follow",) if args.hd else ("moving_average", "savgol2", "follow")
    sizes = ("full", f"capped {args.cap}") if args.hd and args.cap else ("full",)
    jumps = (0.0, args.max_jump) if args.plant else (args.max_jump,)  # planted: with the outlier test off and on
    results = {(m, k, j): ([], [], []) for j in jumps for m in methods for k in
               [f"{kind} {size}" if args.hd else kind for kind in ("still", "moving") for size in sizes]}
    caught = {(k, j): [0, 0, 0] for k in ("still", "moving") for j in jumps}  # planted caught, planted, others
    for i, clip in enumerate(clips):
        frames = read_frames(clip, gray=True)[:args.frames]
        motion = pan_motion(pan_path(len(frames)), frames.shape[2:0:-1], args.zoom, args.roll)
        for kind, clip_frames, known in (("still", frames, None), ("moving", pan_frames(frames, motion), motion)):
            # the moving clip's canvas is larger than the clip: detection scales it as the still one, so
            # its faces stay above HOG's 80-px window (as they would in a video of that size)
            detect_side = round(TrackParams().detect_short_side * min(clip_frames.shape[1:3]) / min(frames.shape[1:3]))
            if args.hd:
                clip_frames, up = resized(clip_frames, args.hd, cv2.INTER_CUBIC)
                known = None if known is None else np.stack([geometry.compose(up, m) for m in known])
            lms = landmarks_of(clip_frames, plant=args.plant, seed=i, stride=args.stride,
                               detect_short_side=detect_side)
            for size in sizes:
                label = f"{kind} {size}" if args.hd else kind
                if size == "full":
                    found, to_found = lms, None
                else:  # aligned on the downscaled frames, measured against the full-size reference
                    small, to_found = resized(clip_frames, args.cap, cv2.INTER_AREA)
                    found = landmarks_of(small, plant=args.plant, seed=i, stride=args.stride,
                                         detect_short_side=detect_side)
                for j in jumps:
                    aligned, outliers = found.usable(j, args.window)
                    count = caught[kind, j]
                    count[0] += int((outliers & found.planted).sum())
                    count[1] += int(found.planted.sum())
                    count[2] += int((outliers & ~found.planted).sum())
                    for m in methods:
                        tf = crop_transforms(aligned, m, args.window, args.speed)
                        if to_found is not None:  # full frame -> downscaled frame -> crop
                            tf = np.stack([geometry.compose(t, to_found) for t in tf])
                            aligned = geometry.apply(geometry.invert(to_found), aligned)
                        off, st, lm = results[m, label, j]
                        off.append(mouth_offsets(tf, lms.reference))
                        st.append(centre_steps(tf, known))
                        lm.append(stored_offsets(aligned, tf, lms.reference))
        print(f"[{i + 1}/{len(clips)}] {clip.name}: {len(frames)} frames", flush=True)
    print(f"\nmouth offset, jitter and stored-landmark error, 96x96 crop px (window +-{args.window}, follow_speed "
          f"{args.speed}; moving: pan {SPEED} px/frame, zoom +-{args.zoom}, roll +-{args.roll} deg; "
          f"{args.plant} planted outlier(s) per clip)")
    print(f"{'method':<16}{'clips':<18}{'max_jump':>9}{'median':>8}{'p95':>8}{'worst':>8}{'jitter':>8}{'stored':>8}")
    for (m, kind, j), (off, st, lm) in results.items():
        s = summary(off, st, lm)
        print(f"{m:<16}{kind:<18}{j:9.2f}{s['median']:8.2f}{s['p95']:8.2f}{s['worst']:8.2f}{s['jitter']:8.3f}"
              f"{s['stored']:8.2f}")
    for (kind, j), (hit, planted, others) in caught.items():
        print(f"outlier test, max_jump {j:.2f}, {kind} clips: {hit} of {planted} planted frames caught, "
              f"{others} other frames taken out")
    print(f"landmarker passes per frame: {PASSES[0] / max(PASSES[1], 1):.3f} ({PASSES[0]} over {PASSES[1]} frames)")
    print("peer (auto_avsr, issue 15, FAN on HDTF-style clips): median 3.3-3.4, worst 10-12")


if __name__ == "__main__":
    main()
