"""`python -m pipeline predict VIDEO...`: the fake probability of video files, with a per-second timeline.

Each file goes through the stages' resample, track and align code in process (pipeline/video_crops.py), then
the fine-tuned detector scores its non-overlapping 1-s clips (train/scoring.py: the evaluate stage's rule,
video score = mean clip logit, probability = sigmoid). Models load once for all files. A file that cannot be
scored gets a plain reason and the exit status is 1; the other files are still scored.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from preprocess.contract import FPS
from preprocess.shardformat import crops_to_gray

if TYPE_CHECKING:  # the CLI imports this module to build its parser: heavy imports wait for `run`
    from pipeline.video_crops import VideoCrops

DEFAULT_DETECTOR = Path("artifacts/finetune/detector.pt")
DEFAULT_ENCODER = Path("artifacts/pretrain/encoder.pt")
EXIT_UNSCORED = 1  # some file could not be scored


@dataclass
class ScoredClip:
    """One scored clip: `frames` consecutive frames (1 s) of the 25 fps video from `frame`."""
    frame: int
    frames: int
    logit: float
    probability: float
    av_mismatch: float | None = None  # mean over the audio-visual windows covering this second; None: none

    @property
    def start_s(self) -> float:
        return self.frame / FPS

    @property
    def end_s(self) -> float:
        return (self.frame + self.frames) / FPS


@dataclass
class Prediction:
    file: str
    reason: str = ""  # plain words why the file was not scored; "" when it was
    failed_step: str = ""
    score: float | None = None  # mean clip logit
    probability: float | None = None  # sigmoid(score): the fake probability
    av_mismatch: float | None = None  # the pretrained pair's zero-shot score (0 in sync, ~0.5 unrelated)
    av_reason: str = ""  # why av_mismatch is None
    clips: list[ScoredClip] = field(default_factory=list)  # the timeline, in time order
    n_frames: int = 0
    face_tracks: int = 0
    tracks: list[dict] = field(default_factory=list)  # the scored pieces of the chosen face track
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per step
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # CPU time per step (all threads, ffmpeg)

    @property
    def ok(self) -> bool:
        return not self.reason

    def to_json(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k != "clips"}
        out["ok"] = self.ok
        out["duration_s"] = round(self.n_frames / FPS, 3)
        out["timeline"] = [{"start_s": c.start_s, "end_s": c.end_s, "frame": c.frame, "logit": round(c.logit, 5),
                            "probability": round(c.probability, 5),
                            "av_mismatch": None if c.av_mismatch is None else round(c.av_mismatch, 5)}
                           for c in self.clips]
        return out


def score_crops(crops: VideoCrops, detector, device: str = "cpu", batch_size: int = 8,
                on_clips=None) -> Prediction:
    """The detector's clip logits over every kept piece, the video score and the timeline.

    `on_clips(scored, total)` reports progress every `batch_size` clips (progress display).
    """
    import numpy as np

    from train.scoring import clip_starts, probability, video_clip_logits, video_score

    pred = Prediction(str(crops.path), crops.reason, crops.step if crops.reason else "", n_frames=crops.n_frames,
                      face_tracks=crops.face_tracks, seconds=dict(crops.seconds),
                      cpu_seconds=dict(crops.cpu_seconds))
    if not crops.ok:
        return pred
    clip = detector.cfg.clip
    total, done = sum(len(seg.frames) // clip for seg in crops.segments), 0
    logits = []
    for seg in crops.segments:
        video = crops_to_gray(seg.crops)  # align.color: the detector reads grey, as from the shards
        parts = []
        # batch_size clips at a time: clips start at multiples of `clip` within the piece, so the chunks'
        # logits are those of one call on the whole piece
        for lo in range(0, len(video) // clip * clip, clip * batch_size):
            parts.append(video_clip_logits(detector, video[lo:lo + clip * batch_size], device, batch_size))
            done += len(parts[-1])
            if on_clips:
                on_clips(done, total)
        seg_logits = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        for start, logit in zip(clip_starts(len(video), clip), seg_logits):
            pred.clips.append(ScoredClip(int(seg.frames[start]), clip, float(logit), probability(float(logit))))
        logits.append(seg_logits)
        pred.tracks.append({"piece": seg.piece, "track_segment": seg.track_segment,
                            "start_frame": int(seg.frames[0]), "end_frame": int(seg.frames[-1]) + 1,
                            "n_clips": len(seg_logits), "box": list(seg.box), "n_faces": seg.n_faces,
                            "sync_method": seg.sync_method, "speaker_ambiguous": seg.speaker_ambiguous})
    if not pred.clips:
        longest = max(len(s.frames) for s in crops.segments)
        pred.reason, pred.failed_step = (f"too short to score: the longest face piece has {longest} frames, "
                                         f"one clip needs {clip}"), "score"
        return pred
    pred.clips.sort(key=lambda c: c.frame)
    pred.score = video_score(np.concatenate(logits))
    pred.probability = probability(pred.score)
    return pred


def add_av_mismatch(pred: Prediction, crops: VideoCrops, pair, device: str = "cpu") -> None:
    """The pretrained pair's zero-shot audio-visual mismatch score of the video (train/av_mismatch.py, as the
    av_mismatch stage computes it), and per second of the timeline the mean over the windows covering it.
    `pair`: (model, its pretraining config, MismatchParams), or (None, reason, None) when there is none."""
    import numpy as np

    from train.av_mismatch import pair_view, segment_ranks

    model, config, params = pair
    if model is None:
        pred.av_reason = config
        return
    if not pred.ok:
        return
    window, view = pair_view(config)
    ranks, covering = [], {}
    for seg in crops.segments:
        if seg.audio is None:
            continue
        starts, seg_ranks = segment_ranks(model, crops_to_gray(seg.crops), seg.audio, window, view, params, device)
        for start, r in zip(starts, seg_ranks):
            if np.isfinite(r):
                ranks.append(float(r))
                first = int(seg.frames[start])
                for clip in pred.clips:
                    if clip.frame < first + window and first < clip.frame + clip.frames:
                        covering.setdefault(clip.frame, []).append(float(r))
    if not ranks:
        pred.av_reason = ("the video has no audio" if all(s.audio is None for s in crops.segments) else
                          f"no kept face piece holds a whole {window}-frame window")
        return
    pred.av_mismatch = float(np.mean(ranks))
    for clip in pred.clips:
        if clip.frame in covering:
            clip.av_mismatch = float(np.mean(covering[clip.frame]))


def load_pair_or_reason(encoder: Path, device: str):
    """(model, config, MismatchParams) of the pretrained pair, or (None, why not, None): predict still scores
    with the detector when the pair is missing."""
    from preprocess.settings import section
    from pipeline.corpora import load_params
    from train.av_mismatch import MismatchParams
    from train.avpair import load_pair

    try:
        model, config = load_pair(encoder, device)
    except (FileNotFoundError, ValueError) as exc:
        return None, f"no audio-visual mismatch score: {exc}", None
    return model, config, section(load_params(), "av_mismatch", MismatchParams)


def format_text(pred: Prediction, per_line: int = 8, val_threshold: float | None = None) -> str:
    """What a person reads: the probability, which face was scored, the per-second timeline.

    `val_threshold`: the detector's logit threshold chosen on val (finetune), when it has one.
    """
    if not pred.ok:
        step = f" ({pred.failed_step} step)" if pred.failed_step and pred.failed_step != "open" else ""
        return f"{pred.file}: cannot score{step}: {pred.reason}"
    lines = [f"{pred.file}: fake probability {pred.probability:.3f} (mean clip logit {pred.score:+.3f} over "
             f"{len(pred.clips)} one-second clips of {pred.n_frames / FPS:.1f} s)"]
    if val_threshold is not None:
        from train.scoring import probability

        lines[0] += (f"; at the detector's val threshold ({probability(val_threshold):.3f}): "
                     f"{'fake' if pred.score > val_threshold else 'real'}")
    most = max(t["n_faces"] for t in pred.tracks)
    lines.append(f"  faces: {pred.face_tracks} face track{'s' * (pred.face_tracks != 1)} seen, at most {most} "
                 f"at once; scored:")
    for t in pred.tracks:
        x1, y1, x2, y2 = t["box"]
        how = t["sync_method"] + (", ambiguous: no clear speaker" if t["speaker_ambiguous"] else "")
        lines.append(f"    frames {t['start_frame']}-{t['end_frame'] - 1} ({t['start_frame'] / FPS:.1f}-"
                     f"{t['end_frame'] / FPS:.1f} s), face box x {x1:.0f}-{x2:.0f} y {y1:.0f}-{y2:.0f}, "
                     f"{t['n_clips']} clips, chosen by {how}")
    if pred.av_mismatch is not None:
        lines.append(f"  audio-visual mismatch (zero-shot, pretrained pair; 0 in sync, about 0.5 unrelated): "
                     f"{pred.av_mismatch:.3f}")
    elif pred.av_reason:
        lines.append(f"  audio-visual mismatch: none ({pred.av_reason})")
    cells = [f"{c.start_s:5.1f}s {c.probability:.2f}" + ("" if c.av_mismatch is None else f" av {c.av_mismatch:.2f}")
             for c in pred.clips]
    lines.append("  timeline (fake probability per second" + (", av: audio-visual mismatch" if
                                                              pred.av_mismatch is not None else "") + "):")
    lines += ["    " + " | ".join(cells[i:i + per_line]) for i in range(0, len(cells), per_line)]
    return "\n".join(lines)


def run(videos: list[str], detector_path: Path, as_json: bool = False, png: Path | None = None,
        device: str | None = None, out=None, corrupt: str | None = None, encoder_path: Path | None = None) -> int:
    """Score every file; print text (or one JSON document); exit status 0, or 1 if any file was not scored.

    `corrupt` ("TYPE:LEVEL", e.g. "blur:3"): score the mouth crops with that corruption applied to the full
    frames (landmarks from the clean frames), as the robustness stage does."""
    from pipeline import video_crops as chain
    from train.scoring import load_detector

    out = out or sys.stdout
    started, started_cpu = time.perf_counter(), chain.cpu_time()
    device = device or _default_device()
    params = chain.chain_params()  # bad params or missing weights stop here, before any model loads
    corrupting = chain.Corrupting.parse(corrupt) if corrupt else None  # a bad TYPE:LEVEL too
    detector, meta = load_detector(detector_path, device)
    val_threshold = meta.get("val_threshold") if isinstance(meta, dict) else None
    pair = (load_pair_or_reason(encoder_path, device) if encoder_path is not None
            else (None, "no pretrained encoder given (--encoder)", None))
    models = chain.load_models(params, device)
    load_s, load_cpu_s = round(time.perf_counter() - started, 3), round(chain.cpu_time() - started_cpu, 3)
    predictions, strips = [], []
    for video in videos:
        with FileProgress(Path(video).name) as progress:
            crops = chain.video_crops(Path(video), params, models, progress.step, corrupting)
            clock, cpu = time.perf_counter(), chain.cpu_time()
            pred = score_crops(crops, detector, device, on_clips=progress.clips)
            add_av_mismatch(pred, crops, pair, device)
            if crops.ok:
                pred.seconds["score"] = round(time.perf_counter() - clock, 3)
                pred.cpu_seconds["score"] = round(chain.cpu_time() - cpu, 3)
        predictions.append(pred)
        strips.append(_strip(crops) if png else None)
        if not as_json:
            text = format_text(pred, val_threshold=val_threshold)
            if corrupting:  # the first line says what was scored
                head, _, rest = text.partition("\n")
                text = f"{head} [corrupted: {corrupting.corruption}]" + (f"\n{rest}" if rest else "")
            print(text, file=out, flush=True)
    if png:
        from pipeline.predict_png import draw_predictions

        draw_predictions(predictions, strips, png)
        if not as_json:
            print(f"wrote {png}", file=out)
    if as_json:
        doc = {"detector": str(detector_path), "detector_meta": _plain_meta(meta), "device": device,
               "encoder": None if encoder_path is None else str(encoder_path),
               "corruption": str(corrupting.corruption) if corrupting else None,
               "val_threshold": val_threshold,
               "load_seconds": load_s, "load_cpu_seconds": load_cpu_s,
               "seconds": round(time.perf_counter() - started, 3), "videos": [p.to_json() for p in predictions]}
        print(json.dumps(doc, indent=1, sort_keys=True, default=str), file=out)
    return 0 if all(p.ok for p in predictions) else EXIT_UNSCORED


class FileProgress:
    """Progress of one file on stderr: the step running with its elapsed time (on a terminal refreshed every
    second by a helper thread: the preprocessing steps report nothing while they run), then the clips scored."""

    def __init__(self, name: str):
        import threading

        from tqdm import tqdm

        self.name = name
        self.bar = tqdm(desc=name, file=sys.stderr, leave=False, bar_format="{desc}{elapsed}")
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, daemon=True)
        if sys.stderr.isatty():  # a log file gets the step changes only, not a line a second
            self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            self.bar.refresh()

    def step(self, name: str) -> None:
        self.bar.set_description(f"{self.name}: {name or 'score'}")

    def clips(self, done: int, total: int) -> None:
        if self.bar.total != total:
            self._stop.set()  # from here on the bar moves by itself
            self.bar.bar_format = None
            self.bar.reset(total=total)
            self.bar.unit = "clip"
        self.bar.update(done - self.bar.n)

    def __enter__(self) -> "FileProgress":
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._ticker.is_alive():
            self._ticker.join()
        self.bar.close()


def _strip(crops: VideoCrops) -> dict:
    """{frame: mouth crop} for the frames the PNG's filmstrip shows (those in a kept piece)."""
    from pipeline.predict_png import strip_frames

    out = {}
    for seg in crops.segments:
        first, n = int(seg.frames[0]), len(seg.frames)
        out.update({f: seg.crops[f - first] for f in strip_frames(crops.n_frames) if 0 <= f - first < n})
    return out


def _plain_meta(meta) -> dict:
    """The detector's meta, minus bulky entries (per-step training history)."""
    if not isinstance(meta, dict):
        return {}
    return {k: v for k, v in meta.items() if k not in ("history",)}


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def main(args) -> int:
    import os

    from preprocess import paths

    # Idle OpenMP threads sleep instead of spinning. Measured on a shared 2-core machine: with spinning, 2 torch
    # threads ran RetinaFace and the detector 2-9x slower than 1 thread; sleeping, never slower. Must be set
    # before torch loads its OpenMP runtime, hence here and not in `run`.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    detector = args.detector or paths.project_root() / DEFAULT_DETECTOR
    encoder = args.encoder or paths.project_root() / DEFAULT_ENCODER
    return run(args.videos, detector, args.json, args.png, args.device, corrupt=args.corrupt, encoder_path=encoder)


def add_arguments(parser) -> None:
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files to score")
    parser.add_argument("--detector", type=Path,
                        help=f"fine-tuned detector (default: {DEFAULT_DETECTOR} in the project, made by the "
                             "finetune stage)")
    parser.add_argument("--encoder", type=Path,
                        help=f"pretrained audio-visual pair for the zero-shot mismatch score (default: "
                             f"{DEFAULT_ENCODER} in the project, made by the pretrain stage)")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout instead of text")
    parser.add_argument("--png", type=Path, help="draw each video's timeline over a strip of its mouth crops")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--corrupt", metavar="TYPE:LEVEL",
                        help="apply a corruption (blockwise, blur, jpeg, compression; levels from params.yaml "
                             "robustness) to the full frames before the mouths are warped; landmarks come from the "
                             "clean frames, as in the robustness stage")
