"""The GPU path in one run: preprocessing frames/s (RetinaFace + FAN, batched), pretraining pairs/s, fine-tuning
and evaluation clips/s, each with its peak GPU memory, printed as one table.

    bash benchmarks/gpu.sh                     # on a GPU machine: the whole run in at most 8 minutes
    python benchmarks/bench_gpu.py --smoke     # anywhere (CPU): tiny models, one step each; checks the script

Each part runs the project's own code on synthetic inputs of the real shapes (nothing is read from shards,
so no preprocessing runs first, and no input pipeline limits the figures):
  detect     preprocess.track.detect.RetinaFaceBatch on `track.batch` frames at `track.detect_short_side`
             (720p frames shrunk, as the track stage gives them), boxes decoded and NMS'd on the host
  landmarks  preprocess.align.landmarks_fan.FanLandmarker on `align.batch_size` 720p frames with their face box
             (the 256x256 crops are warped on the host, as in the align stage)
  pretrain   train.pretrain.train_step at the paper's R18 + L6-Transformer and wav2vec2-base shape
             (params/paper.yaml: 2 s windows, its per-GPU batch), bf16 autocast, AdamW, InfoNCE
  finetune   train.finetune.train_step at the paper's fine-tuning (frozen stem and trunk, 1 s clips, its batch)
  evaluate   train.scoring.video_clip_logits (the evaluate stage's scoring: 1 s clips, fp32, up to
             `evaluate.batch_size` a forward) on 10 s segments
The frames are scikit-image's astronaut photograph moving across a 1280x720 canvas. Weights: RetinaFace from
--retinaface (or weights.retinaface's usual lookup) when there is a file, else random (the network's cost is
the same; random scores would keep hundreds of boxes, so then none is kept and NMS is not timed: the table says
which); FAN and both
encoders random (the compute of trained ones). Each part: warm-up steps (CUDA's lazy loading, the allocator),
then timed steps until --seconds have passed; peak memory is torch.cuda.max_memory_allocated per part.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PARTS = ("detect", "landmarks", "pretrain", "finetune", "evaluate")
FRAME_SIZE = (720, 1280)  # the resample stage's largest output (max_short_side 720)


def synthetic_frames(n: int, size: tuple[int, int] = FRAME_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """n RGB frames (n, H, W, 3) with a real face moving across them, and the face's box in each (n, 4)."""
    import cv2
    from skimage import data

    h, w = size
    side = (h * 3) // 4  # her head and shoulders at 540 px of a 720p frame: a 190 px face, as in a talking head
    face = cv2.resize(data.astronaut()[0:256, 96:352], (side, side), interpolation=cv2.INTER_AREA)
    face_box = np.array([69, 60, 179, 180], np.float32) * side / 256  # her face in that crop (dlib's, widened)
    frames = np.full((n, h, w, 3), 96, np.uint8)
    boxes = np.empty((n, 4), np.float32)
    for i in range(n):
        x, y = int((w - side) * (0.3 + 0.4 * i / max(n - 1, 1))), (h - side) // 2
        frames[i, y:y + side, x:x + side] = face
        boxes[i] = face_box + (x, y, x, y)
    return frames, boxes


def timed(step, args, device) -> tuple[float, int]:
    """Mean seconds per call of `step` after `args.warmup` untimed calls, timing until `args.seconds` have
    passed and at least `args.min_steps` calls; the GPU's queue drained around each call."""
    import torch

    cuda = device.type == "cuda"
    for _ in range(args.warmup):
        step()
    times = []
    while len(times) < args.min_steps or sum(times) < args.seconds:
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return sum(times) / len(times), len(times)


def paper_setup(smoke: bool) -> dict:
    """params.yaml with params/paper.yaml applied, wav2vec2 randomly initialised (no download); in smoke mode
    params.yaml's own small audio encoder and the tests' tiny video encoder instead."""
    from pipeline.params import paper_params
    from preprocess.settings import load_yaml

    if not smoke:
        params = json.loads(json.dumps(paper_params(ROOT / "params.yaml")))  # plain dicts and lists
        params["model"]["audio"]["pretrained"] = False
        return params
    from models.presets import TINY_VIDEO

    params = load_yaml(ROOT / "params.yaml")
    params["model"]["video"] = {k: list(v) if isinstance(v, tuple) else v
                                for k, v in dataclasses.asdict(TINY_VIDEO).items()}
    return params


def write_params(params: dict, folder: Path) -> Path:
    import yaml

    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def reset_peak(device) -> None:
    """Start a part's peak-memory count (the earlier parts' models are freed by then)."""
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def pinned(batch: dict, device) -> dict:
    """A host batch as the training loaders give it on a GPU (pin_memory): its copy to the card is asynchronous."""
    return {k: v.pin_memory() for k, v in batch.items()} if device.type == "cuda" else batch


def bench_detect(args, params: dict, device, frames: np.ndarray) -> dict:
    import cv2
    import torch

    from preprocess.track.detect import DetectorParams, RetinaFaceBatch, detection_size
    from preprocess.weights import RETINAFACE_FILE, resolve_weights

    track = params["track"]
    weights, note = args.retinaface, "trained"
    if weights is None:
        try:  # params, $AVLIPS_WEIGHTS, the torch hub cache; no download (a GPU machine may be offline)
            weights = resolve_weights((params.get("weights") or {}).get("retinaface"), RETINAFACE_FILE)
        except FileNotFoundError:
            weights = None
    scratch = None
    if weights is None:  # random weights: the network's cost, not its boxes
        from face_alignment.detection.retinaface.net_retinaface import RetinaFace, cfg_mnet

        scratch = tempfile.TemporaryDirectory()
        weights = Path(scratch.name) / "random_retinaface.pth"
        torch.save(RetinaFace(cfg=cfg_mnet).state_dict(), weights)
        note = "random weights: no box kept, NMS not timed"
    batch = args.batch or track["batch"]
    width, height = detection_size(frames.shape[2], frames.shape[1], track["detect_short_side"])
    small = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames[:batch]])
    dp = DetectorParams(**{k: v for k, v in track["detect"].items() if k in DetectorParams.__dataclass_fields__})
    if scratch is not None:  # random scores would keep hundreds of boxes a frame and time an unreal NMS
        dp = dataclasses.replace(dp, confidence=1.0)
    reset_peak(device)
    detector = RetinaFaceBatch(Path(weights), dp, str(device))
    found = detector(small)
    per_batch, steps = timed(lambda: detector(small), args, device)
    peak = peak_gib(device)
    if scratch is not None:
        scratch.cleanup()
    faces = sum(len(b) for b in found) / len(found)
    return {"part": "detect", "setting": f"RetinaFace mnet0.25 ({note}), batch {batch} at {width}x{height}, "
            f"{faces:.1f} boxes/frame", "rate": batch / per_batch, "unit": "frames/s", "steps": steps, "peak": peak}


def bench_landmarks(args, params: dict, device, frames: np.ndarray, boxes: np.ndarray) -> dict:
    from preprocess.align.landmarks_fan import FanLandmarker

    align = params["align"]
    batch = args.batch or align["batch_size"]
    chunk, chunk_boxes = list(frames[:batch]), boxes[:batch]
    reset_peak(device)
    fan = FanLandmarker(None, align["fan_reference_scale"], batch, device=str(device), random_weights=True)
    per_batch, steps = timed(lambda: fan.predict(chunk, chunk_boxes), args, device)
    peak = peak_gib(device)
    return {"part": "landmarks", "setting": f"FAN 2DFAN4 (random weights), batch {batch} of "
            f"{frames.shape[2]}x{frames.shape[1]} frames", "rate": batch / per_batch, "unit": "frames/s",
            "steps": steps, "peak": peak}


def bench_pretrain(args, params_path: Path, device) -> dict:
    import torch

    from models.avclip import AVContrastiveModel
    from models.loss import InfoNCELoss
    from preprocess.contract import SAMPLES_PER_FRAME
    from train.pretrain import make_optimizer, train_step
    from train.pretrain_config import load_configs

    model_cfg, cfg = load_configs(params_path)
    batch, window = args.batch or cfg.data.batch_size, cfg.data.window
    crop = cfg.data.augment.crop
    torch.manual_seed(0)
    reset_peak(device)
    model = AVContrastiveModel(model_cfg).to(device).train()
    opt, loss_fn = make_optimizer(model, cfg), InfoNCELoss(cfg.temperature)
    data = pinned({"video": torch.randn(batch, window, crop, crop),
                   "audio": torch.randn(batch, window * SAMPLES_PER_FRAME)}, device)
    per_step, steps = timed(lambda: train_step(model, loss_fn, opt, data, cfg, device), args, device)
    peak = peak_gib(device)
    n_video = sum(p.numel() for p in model.video.parameters()) / 1e6
    precision = "bf16 autocast" if cfg.bf16 and device.type == "cuda" else "fp32"
    return {"part": "pretrain", "setting": f"video {n_video:.1f}M + wav2vec2 {model_cfg.audio.hidden}x"
            f"{model_cfg.audio.layers}, batch {batch} x {window} frames, {precision}", "rate": batch / per_step,
            "unit": "pairs/s", "steps": steps, "peak": peak}


def bench_finetune(args, params_path: Path, device) -> dict:
    import torch

    from train.finetune import build_detector, param_groups, train_step
    from train.finetune_config import load_setup

    setup = load_setup(params_path, init="scratch")
    ft = setup.finetune
    batch = args.batch or ft.batch_size
    torch.manual_seed(0)
    reset_peak(device)
    det = build_detector(setup).to(device).train()
    opt = torch.optim.AdamW(param_groups(det, ft))
    data = pinned({"video": torch.randn(batch, ft.clip, setup.augment.crop, setup.augment.crop),
                   "label": (torch.arange(batch) % 2).float()}, device)
    per_step, steps = timed(lambda: train_step(det, opt, data, ft, device), args, device)
    peak = peak_gib(device)
    precision = "bf16 autocast" if ft.bf16 and device.type == "cuda" else "fp32"
    return {"part": "finetune", "setting": f"freeze {ft.freeze}, batch {batch} x {ft.clip} frames, {precision}",
            "rate": batch / per_step, "unit": "clips/s", "steps": steps, "peak": peak}


def bench_evaluate(args, params: dict, params_path: Path, device) -> dict:
    import torch

    from train.finetune import build_detector
    from train.finetune_config import load_setup
    from train.scoring import video_clip_logits

    setup = load_setup(params_path, init="scratch")
    clip, batch = setup.finetune.clip, args.batch or params["evaluate"]["batch_size"]
    seconds_of_video = 2 if args.smoke else 10
    segment = np.random.default_rng(0).integers(0, 256, (25 * seconds_of_video, 96, 96), dtype=np.uint8)
    torch.manual_seed(0)
    reset_peak(device)
    det = build_detector(setup).to(device).eval()
    per_video, steps = timed(lambda: video_clip_logits(det, segment, device, batch), args, device)
    peak = peak_gib(device)
    clips = len(segment) // clip
    return {"part": "evaluate", "setting": f"{seconds_of_video} s segments: {clips} {clip}-frame clips, "
            f"{min(batch, clips)} a forward, fp32", "rate": clips / per_video, "unit": "clips/s", "steps": steps,
            "peak": peak}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    p.add_argument("--seconds", type=float, default=20.0, help="timed seconds per part (after the warm-up)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per part")
    p.add_argument("--min-steps", type=int, default=5, help="timed calls per part, at least")
    p.add_argument("--batch", type=int, help="one batch size for every part (default: each part's params value)")
    p.add_argument("--retinaface", type=Path, help="RetinaFace weights (default: weights.retinaface's lookup)")
    p.add_argument("--device", help="cuda or cpu (default: cuda when there is one)")
    p.add_argument("--smoke", action="store_true", help="tiny models and inputs, one step per part: checks the script")
    args = p.parse_args(argv)
    import torch

    if args.smoke:
        args.seconds, args.warmup, args.min_steps, args.batch = 0.0, 0, 1, args.batch or 2
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}", flush=True)
    params = paper_setup(args.smoke)
    frames, boxes = synthetic_frames(args.batch or max(params["track"]["batch"], params["align"]["batch_size"]),
                                     (144, 256) if args.smoke else FRAME_SIZE)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        params_path = write_params(params, Path(tmp))
        runs = {"detect": lambda: bench_detect(args, params, device, frames),
                "landmarks": lambda: bench_landmarks(args, params, device, frames, boxes),
                "pretrain": lambda: bench_pretrain(args, params_path, device),
                "finetune": lambda: bench_finetune(args, params_path, device),
                "evaluate": lambda: bench_evaluate(args, params, params_path, device)}
        print(TABLE_HEAD, flush=True)  # each row as its part ends: a run cut short keeps the rows it has
        for part in args.parts:
            start = time.perf_counter()
            try:
                row = runs[part]()
            except RuntimeError as e:  # out of GPU memory, a CUDA error: the other parts still run
                row = {"part": part, "setting": f"failed: {str(e).splitlines()[0][:200]}", "rate": None,
                       "unit": "", "steps": 0, "peak": None}
            row["wall"] = time.perf_counter() - start
            rows.append(row)
            print(table_row(row), flush=True)
    print(f"\n{TABLE_HEAD}")
    for row in rows:
        print(table_row(row))
    print(f"({name}; {sum(r['wall'] for r in rows):.0f} s)")
    return 0 if all(r["rate"] for r in rows) else 1


TABLE_HEAD = "| part | setting | throughput | peak GPU memory | timed steps | seconds |\n| --- | --- | --- | --- | --- | --- |"


def table_row(r: dict) -> str:
    rate = f"{r['rate']:,.1f} {r['unit']}" if r["rate"] else "-"
    peak = f"{r['peak']:.2f} GiB" if r["peak"] is not None else "- (CPU)"
    return f"| {r['part']} | {r['setting']} | {rate} | {peak} | {r['steps']} | {r['wall']:.0f} |"


if __name__ == "__main__":
    sys.exit(main())
