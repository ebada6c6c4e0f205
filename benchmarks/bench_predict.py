"""`python -m pipeline predict` on a one-minute talking-head video: seconds per minute of 25 fps video,
start-up included, and where the time goes.

    python benchmarks/bench_predict.py [--minutes 1] [--fps 25 29.97] [--detector PATH] [--work DIR]

A GRID clip (360x288) is looped with ffmpeg to each length (H.264 + AAC in .mp4, as a user's file would
be; `--fps` other than 25 makes the resample step re-encode, as for most real sources), then scored by the
real CLI in a fresh process (`python -m pipeline predict --json`), so imports and model loading count.
The detector is the R18+L6 configuration (the default VideoEncoderConfig) with random weights unless
`--detector` names a trained one: the weights do not change the speed. Params: the repository's
params.yaml (dlib landmarks, RetinaFace from ../shared/weights). Prints wall seconds, seconds per minute
of video, the start-up (wall minus the steps), each step's seconds and the peak RSS. Nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO))

DEFAULT_CLIP = SHARED / "testdata" / "grid" / "bbaf2n.mpg"
RETINAFACE = SHARED / "weights" / "retinaface" / "retinaface_mobilenet0.25.pth"
STEPS = ("resample", "track", "align", "score")


def looped_source(clip: Path, seconds: int, fps: float, work: Path) -> Path:
    from preprocess.ffmpeg import run_ffmpeg
    from preprocess.probe import probe

    out = work / f"{clip.stem}-{seconds}s-{fps:g}fps.mp4"
    if out.exists():
        return out
    # Through an .mkv copy (-stream_loop fails on FLV), looped without filters (timestamps restart at every
    # loop and would confuse the fps filter), then brought to `fps` in a pass of its own when it differs.
    base, looped = work / f"{clip.stem}-base.mkv", work / f"{clip.stem}-looped.mkv"
    run_ffmpeg(["-i", str(clip), "-c:v", "libx264", "-preset", "veryfast", "-crf", "16", "-c:a", "pcm_s16le",
                str(base)])
    run_ffmpeg(["-stream_loop", "-1", "-i", str(base), "-t", str(seconds), "-c:v", "libx264", "-preset",
                "veryfast", "-crf", "18", "-c:a", "pcm_s16le", str(looped)])
    rate = [] if abs((probe(looped).fps or fps) - fps) < 0.01 else ["-vf", f"fps={fps}"]
    run_ffmpeg(["-i", str(looped), *rate, "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt",
                "yuv420p", "-c:a", "aac", str(out)])
    base.unlink()
    looped.unlink()
    return out


def random_detector(path: Path) -> Path:
    import torch

    from models.detector import Detector
    from models.video import VideoEncoderConfig
    from pipeline.params import paper_params
    from preprocess.settings import section
    from train.scoring import save_detector

    if not path.exists():
        torch.manual_seed(0)
        paper = section(paper_params(REPO / "params.yaml"), "model.video", VideoEncoderConfig)
        save_detector(path, Detector(paper), {"note": "random R18+L6, for timing only"})
    return path


def project(work: Path) -> Path:
    """A project root holding the repository's params.yaml, weights pointed at ../shared."""
    root = work / "project"
    root.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["corpora"] = {}
    params["weights"]["retinaface"] = str(RETINAFACE)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def predict(video: Path, detector: Path, root: Path) -> tuple[float, float, dict]:
    """(wall seconds, CPU seconds of the process and its ffmpeg children, the --json document)."""
    env = {**os.environ, "AVLIPS_ROOT": str(root), "PYTHONPATH": str(REPO)}
    cpu = children_cpu()
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pipeline", "predict", str(video), "--detector", str(detector),
                           "--json", "--device", "cpu"], capture_output=True, text=True, env=env, cwd=root)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"predict failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return wall, children_cpu() - cpu, json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0])
    parser.add_argument("--fps", type=float, nargs="+", default=[25.0], help="frame rates of the looped sources")
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--detector", type=Path, help="detector.pt (default: random R18+L6)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "avlips-bench-predict")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here too")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    detector = args.detector or random_detector(args.work / "detector-r18-l6-random.pt")
    root = project(args.work)
    print(f"cpus: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f} (a shared machine slows every figure)")
    print("Per run, two rows: wall seconds, then CPU seconds (all threads and ffmpeg; on an idle machine the wall\n"
          "time lies between CPU/cores and CPU). start-up = total minus the steps (imports, model loading, exit).")
    print(f"{'minutes':>7} {'fps':>6} {'frames':>6} {'clock':>5} {'total':>7} {'s/min':>6} {'start-up':>8} "
          + " ".join(f"{s:>8}" for s in STEPS) + f" {'peak RSS':>9}")
    results = []
    for minutes in args.minutes:
        for fps in args.fps:
            video = looped_source(args.clip, round(minutes * 60), fps, args.work)
            wall, cpu, doc = predict(video, detector, root)
            rec = doc["videos"][0]
            video_min = rec["n_frames"] / 25 / 60
            rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            r = {"minutes": minutes, "source_fps": fps, "frames": rec["n_frames"], "clips": len(rec["timeline"]),
                 "peak_rss_mb_max_so_far": round(rss), "load_average": round(os.getloadavg()[0], 1)}
            for clock, total, per_step in (("wall", wall, rec["seconds"]), ("cpu", cpu, rec["cpu_seconds"])):
                steps = {s: per_step.get(s, 0.0) for s in STEPS}
                r[clock] = {"total_s": round(total, 2), "s_per_min": round(total / video_min, 2),
                            "startup_s": round(total - sum(steps.values()), 2),
                            **{f"{s}_s": v for s, v in steps.items()}}
                print(f"{minutes:>7g} {fps:>6g} {r['frames']:>6} {clock:>5} {total:>7.1f} {total / video_min:>6.1f} "
                      f"{r[clock]['startup_s']:>8.1f} " + " ".join(f"{steps[s]:>8.1f}" for s in STEPS)
                      + (f" {rss:>6.0f} MB" if clock == "wall" else ""), flush=True)
            results.append(r)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
