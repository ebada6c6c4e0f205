"""One video file to the mouth crops of its chosen face, in process: the resample, track and align steps of
the DVC stages and the crop stage's rendering (the same preprocess/ functions, the same params.yaml sections
and weights), in a temporary folder, without DVC, the corpus registry or a dask cluster.

Used by `python -m pipeline predict`. Models are loaded once (`load_models`) and reused for every file; a
file that cannot be used gets a plain-words reason, never an exception.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.corpora import load_params
from preprocess.corrupt import Corruption, RobustnessParams
from preprocess.records import CorpusRef, StageFailure
from preprocess.align.align_params import AlignParams
from preprocess.resample.convert import ResampleParams
from preprocess.track.track_params import TrackParams

STEPS = ("resample", "track", "align")


@dataclass(frozen=True)
class ChainParams:
    """What the stages read from params.yaml: their sections and the weight files they load."""
    resample: ResampleParams
    track: TrackParams
    align: AlignParams
    retinaface: str | None  # None with track.detector dlib (its model ships with the wheel)
    syncnet: str | None
    fan: str | None


@dataclass
class ChainModels:
    face_detector: object  # preprocess.track.detect.make_detector's result (dlib or RetinaFace)
    syncnet: object | None  # preprocess.track.syncnet.SyncNetScorer, when weights.syncnet is set
    landmarker: object  # preprocess.align.align_video.make_landmarker's result


@dataclass
class Segment:
    """One kept piece of the chosen face track (the align stage's piece: a sample's <segment> in shards)."""
    piece: int
    track_segment: int
    frames: np.ndarray  # (T,) int32: frame indices in the 25 fps video
    crops: np.ndarray  # (T, 96, 96) uint8, or (T, 96, 96, 3) with align.color
    box: tuple[float, float, float, float]  # median face box x1, y1, x2, y2 in frame pixels
    n_faces: int  # most faces seen at once during the track segment
    sync_method: str  # how the face was chosen: single-face, av-energy, syncnet, ...
    speaker_ambiguous: bool
    audio: np.ndarray | None = None  # (T * 640,) float32 16 kHz audio of its frames (as in shards); None: no audio


@dataclass
class VideoCrops:
    path: Path
    reason: str = ""  # plain words why the file cannot be used; "" when it can
    step: str = ""  # the step that gave the reason
    n_frames: int = 0  # frames of the 25 fps video
    face_tracks: int = 0  # face tracks seen (all faces, not only the chosen one)
    segments: list[Segment] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per step
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # CPU time per step, ffmpeg children included

    @property
    def ok(self) -> bool:
        return not self.reason


def chain_params(params: dict | None = None) -> ChainParams:
    """The stages' params and weights from params.yaml (the project's, or `params`), read as they read them."""
    from preprocess.align import stage as align_stage
    from preprocess.resample import stage as resample_stage
    from preprocess.track import stage as track_stage

    params = load_params() if params is None else params
    align_params = align_stage.settings(params)
    track_params = track_stage.settings(params)
    weights = track_stage.weight_files(params, track_params.detector)  # plain words when one is missing
    fan = align_stage.resolve_weights(align_params, params)
    # Read as for a file of an eval corpus: one without audio can still be scored (pretraining needs audio).
    as_eval = CorpusRef("predict", "eval", "real", Path("."))
    return ChainParams(resample_stage.settings(params, as_eval), track_params, align_params,
                       weights["retinaface"], weights["syncnet"], str(fan) if fan else None)


def load_models(params: ChainParams, device: str = "cpu") -> ChainModels:
    from preprocess.align.align_video import make_landmarker
    from preprocess.track.detect import make_detector

    syncnet = None
    if params.syncnet:
        from preprocess.track.syncnet import SyncNetScorer

        syncnet = SyncNetScorer(Path(params.syncnet), vshift=params.track.sync.syncnet_vshift)
    detector = make_detector(params.track.detector, params.track.detect, params.retinaface, device)
    return ChainModels(detector, syncnet, make_landmarker(params.align, Path(params.fan) if params.fan else None))


def video_crops(path: Path, params: ChainParams, models: ChainModels, on_step=None,
                corrupt: Corrupting | None = None) -> VideoCrops:
    """Resample, track and align `path` in a temporary folder; the crops of every kept piece, in order.

    `on_step(name)` is called as each step starts (progress display). `corrupt`: the crops are rendered
    again with that corruption on the full frames, warped by the transforms of the clean frames.
    """
    path = Path(path)
    result = VideoCrops(path)
    if not path.is_file():
        result.reason, result.step = ("no such file" if not path.exists() else "not a file"), "open"
        return result
    with tempfile.TemporaryDirectory(prefix="avlips-predict-") as tmp:
        try:
            _run_steps(path, Path(tmp), params, models, result, on_step or (lambda step: None), corrupt)
        except StageFailure as exc:
            result.reason, result.segments = exc.reason, []
        except Exception as exc:  # one odd file must not stop the others from being scored
            result.reason, result.segments = f"unexpected error: {type(exc).__name__}: {exc}", []
    return result


def _run_steps(path: Path, tmp: Path, params: ChainParams, models: ChainModels, result: VideoCrops,
               on_step, corrupt: Corrupting | None = None) -> None:
    from preprocess.align.align_video import align_video, load_aligned
    from preprocess.corrupted_crops import render as render_corrupted
    from preprocess.crop.render import render_mouths
    from preprocess.crop.samples import open_audio
    from preprocess.resample.convert import resample_video
    from preprocess.track.track_video import track_video

    video, audio = tmp / "video.mkv", tmp / "audio.wav"
    clock, cpu = time.perf_counter(), cpu_time()

    def step(name: str) -> None:
        nonlocal clock, cpu
        now, now_cpu = time.perf_counter(), cpu_time()
        if result.step:
            result.seconds[result.step] = round(now - clock, 3)
            result.cpu_seconds[result.step] = round(now_cpu - cpu, 3)
        clock, cpu = now, now_cpu
        result.step = name
        on_step(name)

    step("resample")
    details = resample_video(path, video, audio, params.resample)
    result.n_frames = int(details["n_frames"])
    step("track")
    tracks = track_video(video, audio if audio.exists() else None, params.track, models.face_detector,
                         models.syncnet, pretrain_real=False, scratch=tmp / "boxes.parquet")
    result.face_tracks = int(tracks.details["face_tracks"])
    step("align")
    aligned = tmp / "aligned.npz"
    align_video(video, tracks.boxes, tracks.segments, params.align, models.landmarker, aligned)
    arrays, meta = load_aligned(aligned, keys=("piece", "frame", "crop_transforms", "boxes"))
    # the crop stage's rendering (timed with align): one more decode, the mouths warped from the full frames
    if corrupt is None:
        arrays["crops"] = render_mouths(video, arrays["frame"], arrays["crop_transforms"], params.align.color)
    else:  # the same warp of the same clean-frame transforms, the corruption on the full frames first
        arrays["crops"] = render_corrupted(video, arrays["frame"], arrays["crop_transforms"], params.align.color,
                                           corrupt.corruption, corrupt.params, path.name, tmp)
    step("")
    sound = open_audio(audio if audio.exists() else None)
    result.segments = [_segment(piece, arrays, sound) for piece in meta["pieces"]]


@dataclass(frozen=True)
class Corrupting:
    """`predict --corrupt TYPE:LEVEL`: a corruption with params.yaml's `robustness` settings (levels, seed, x264
    preset), applied as the robustness stage applies it (preprocess/corrupted_crops.py)."""
    corruption: Corruption
    params: RobustnessParams

    @classmethod
    def parse(cls, text: str, params: dict | None = None) -> Corrupting:
        from preprocess.settings import section

        robustness = section(load_params() if params is None else params, "robustness", RobustnessParams)
        return cls(Corruption.parse(text, robustness.levels), robustness)


def cpu_time() -> float:
    """CPU seconds of this process (all threads) and its finished children (ffmpeg): on a shared machine,
    the work done, where wall time also counts the waiting."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _segment(piece: dict, arrays: dict, sound) -> Segment:
    """One piece's crops and (the crop stage's cut of) its audio."""
    from preprocess.crop.samples import segment_audio

    sel = arrays["piece"] == piece["segment"]
    frames = arrays["frame"][sel]
    audio = None if sound is None else segment_audio(sound, int(frames[0]), int(frames[-1]) + 1,
                                                     int(piece.get("audio_shift_frames") or 0))
    return Segment(piece["segment"], piece["track_segment"], frames, arrays["crops"][sel],
                   tuple(round(float(v), 1) for v in np.median(arrays["boxes"][sel], axis=0)),
                   int(piece.get("n_faces") or 1), str(piece.get("sync_method") or ""),
                   bool(piece.get("speaker_ambiguous")),
                   None if audio is None else audio.reshape(-1).astype(np.float32) / 32768.0)
