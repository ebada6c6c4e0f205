"""This project's preprocessing against auto_avsr's preparation (mediapipe path), whole process, one core each,
side by side on the same videos.

    python benchmarks/bench_vs_auto_avsr.py --auto-avsr CLONE --peer-python PEER_VENV/bin/python [--corpus mixed]
    python benchmarks/bench_vs_auto_avsr.py ... --corpus demo      # every video of data/demo (after dvc repro demo)

The peer: a clone of github.com/mpc001/auto_avsr and a Python that runs its preparation (mediapipe 0.10.21,
torch 2.5.1 + torchvision 0.20.1, which still have `mp.solutions` and `torchvision.io.read_video`; e.g.
`python3 -m venv peer && peer/bin/pip install torch==2.5.1 torchvision==0.20.1 torchaudio==2.5.1
mediapipe==0.10.21 "numpy<2" opencv-python-headless scikit-image av==12.3.0 ffmpeg-python tqdm
sentencepiece`; its torchaudio loads audio through FFmpeg 4-6 shared libraries: a system FFmpeg, or Debian's
libavformat59 & co. unpacked with `dpkg -x` and named by `--peer-env LD_LIBRARY_PATH=...`).
It runs benchmarks/auto_avsr_prepare.py: the peer's own code, per video as its preprocess_lrs2lrs3.py does.
The peer's output frame count is printed beside ours: its decoder (torchvision.io.read_video) returns 63 of
a GRID clip's 75 frames and none of a CREMA-D FLV's (the peer then skips that video).

This project: `dvc repro --glob 'crop@bench'` (resample -> track -> align -> crop, the shipped params, dlib
landmarks) in a scratch project whose only corpus is the videos, AVLIPS_WORKERS=1. Both under `taskset -c 0`,
start-up included, after --warmup untimed runs of each, alternating, --repeat times; the ratio is the peer's
median wall time over ours.

--corpus mixed (default): 15 videos made from ../shared's real clips in the formats users bring: 6 GRID
(MPEG-1 360x288, 25 fps), 3 CREMA-D (VP6 FLV 480x360, 29.97 fps), and H.264 MP4s re-encoded from them, each
looped to about 6 s: 2 at 1280x720 25 fps, 2 at 1920x1080 29.97 fps, 2 at 512x512 30 fps.
Per stage it prints the stage command's wall time and the per-video work inside it (logs/timings/): the rest
is start-up, DVC and bookkeeping. Nothing is asserted.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from bench_startup import STAGES, children_cpu, make_project, reset  # noqa: E402  (scratch project, timing shim)

REPO = Path(__file__).resolve().parents[1]
TESTDATA = REPO.parent / "shared" / "testdata"
CORPUS = "bench"
# name: (source clip, ffmpeg video filter, frame rate)
REENCODED = {
    "hd720_a.mp4": ("grid/bbaf2n.mpg", "scale=-2:720,pad=1280:720:(ow-iw)/2:0", "25"),
    "hd720_b.mp4": ("grid/brbk7n.mpg", "scale=-2:720,pad=1280:720:(ow-iw)/2:0", "25"),
    "hd1080_a.mp4": ("cremad/1001_DFA_ANG_XX.flv", "scale=-2:1080,pad=1920:1080:(ow-iw)/2:0", "30000/1001"),
    "hd1080_b.mp4": ("cremad/1001_DFA_DIS_XX.flv", "scale=-2:1080,pad=1920:1080:(ow-iw)/2:0", "30000/1001"),
    "sq512_a.mp4": ("grid/lbax4n.mpg", "crop=288:288,scale=512:512", "30"),
    "sq512_b.mp4": ("grid/lbbc2a.mpg", "crop=288:288,scale=512:512", "30"),
}
REENCODED_KINDS = ("hd720", "hd1080", "sq512")


def mixed_corpus(folder: Path) -> list[Path]:
    from preprocess.ffmpeg import ffmpeg_exe

    folder.mkdir(parents=True, exist_ok=True)
    clips = sorted((TESTDATA / "grid").glob("*.mpg")) + sorted((TESTDATA / "cremad").glob("*.flv"))
    if len(clips) < 9:
        sys.exit(f"the mixed corpus is made from the real clips in {TESTDATA}: not found")
    videos = []
    for clip in clips:
        (folder / clip.name).symlink_to(clip)
        videos.append(folder / clip.name)
    for name, (source, vf, rate) in REENCODED.items():
        src = str(TESTDATA / source)  # played twice (concat: FLV cannot -stream_loop)
        subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-i", src, "-i", src, "-filter_complex",
                        f"[0:v][0:a][1:v][1:a]concat=n=2:v=1:a=1[v][a];[v]{vf}[out]", "-map", "[out]",
                        "-map", "[a]", "-r", rate, "-c:v", "libx264", "-preset", "medium", "-crf", "20",
                        "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", str(folder / name)], check=True)
        videos.append(folder / name)
    return videos


def demo_corpus(folder: Path) -> list[Path]:
    """Every demo video under one folder, with names unique across speakers and corpora."""
    sources = sorted((REPO / "data" / "demo").glob("*/*/*.mkv"))
    if not sources:
        sys.exit("no demo videos in data/demo: run `dvc repro demo` first")
    folder.mkdir(parents=True, exist_ok=True)
    videos = []
    for source in sources:
        corpus, speaker = source.parts[-3], source.parts[-2]
        video = folder / f"{corpus}_{speaker}_{source.name}"
        video.symlink_to(source)
        videos.append(video)
    return videos


def video_kind(video_id: str) -> str:
    """Which kind of the mixed corpus a video is (demo videos count as grid-like "other")."""
    for prefix in REENCODED_KINDS:
        if video_id.startswith(prefix):
            return prefix
    return "cremad" if video_id[:4].isdigit() else "grid" if video_id[:6].isalnum() else "other"


def timed(cmd: list[str], cwd: Path, env: dict) -> tuple[float, float, subprocess.CompletedProcess]:
    start, cpu = time.perf_counter(), children_cpu()
    done = subprocess.run(["taskset", "-c", "0", *cmd], cwd=cwd, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - start, children_cpu() - cpu
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return wall, cpu, done


def ours(root: Path, env: dict) -> tuple[float, float, dict]:
    reset(root)
    wall, cpu, done = timed(["dvc", "repro", "--glob", f"crop@{CORPUS}"], root, env)
    stages: dict = {}
    for line in (root / ".bench" / "commands.log").read_text().splitlines():
        begin, end, *cmd = line.split()
        if cmd[:3] == ["-m", "pipeline", "stage"]:
            stages[cmd[3]] = {"wall": float(end) - float(begin)}
    for stage in STAGES:
        timings = root / "logs" / "timings" / f"{stage}@{CORPUS}.parquet"
        table = pd.read_parquet(timings) if timings.exists() else None
        stages[stage]["work"] = float(table.seconds.sum()) if table is not None else float("nan")
        stages[stage]["ok"] = int((table.status == "ok").sum()) if table is not None else 0
        if table is not None:
            stages[stage]["kinds"] = table.seconds.groupby(table.video_id.map(video_kind)).sum().round(2).to_dict()
    return wall, cpu, stages


def peer(videos: list[Path], out: Path, peer_python: str, clone: Path, extra_env: dict) -> tuple[float, float, str]:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    script = Path(__file__).resolve().parent / "auto_avsr_prepare.py"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(extra_env, OMP_NUM_THREADS="1")
    wall, cpu, done = timed([peer_python, str(script), "--auto-avsr", str(clone), "--out", str(out),
                             *map(str, videos)], out, env)
    summary = next((x for x in done.stdout.splitlines() if x.startswith("PEER ")), "PEER ?")
    return wall, cpu, summary[5:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--auto-avsr", type=Path, required=True, help="a clone of github.com/mpc001/auto_avsr")
    parser.add_argument("--peer-python", required=True, help="the Python of an environment that runs it")
    parser.add_argument("--peer-env", action="append", default=[], metavar="NAME=VALUE",
                        help="set for the peer only, e.g. LD_LIBRARY_PATH of the FFmpeg libraries its "
                             "torchaudio needs (this project's process never sees it)")
    parser.add_argument("--corpus", choices=("mixed", "demo"), default="mixed")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs of each first (a fresh machine's first "
                        "run reads every library and model from disk)")
    parser.add_argument("--skip-peer", action="store_true", help="time this project only")
    parser.add_argument("--inprocess-below", type=int, help="cluster.inprocess_below for this project "
                        "(0: always a LocalCluster; a number above the corpus's size: every stage in its own "
                        "process; default: the shipped params)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-vs-auto-avsr-") as tmp:
        tmp = Path(tmp)
        videos = (mixed_corpus if args.corpus == "mixed" else demo_corpus)(tmp / "videos")
        root = tmp / "project"
        root.mkdir()
        env = make_project(root, REPO, videos, args.inprocess_below, corpus=CORPUS)
        env["AVLIPS_WORKERS"] = "1"
        print(f"{len(videos)} videos ({args.corpus}); one core each (taskset -c 0); {args.warmup} untimed and "
              f"{args.repeat} timed runs each, alternating", flush=True)
        peer_env = dict(item.split("=", 1) for item in args.peer_env)
        for _ in range(args.warmup):
            ours(root, env)
            if not args.skip_peer:
                peer(videos, tmp / "peer", args.peer_python, args.auto_avsr.resolve(), peer_env)
        our_walls, peer_walls = [], []
        for i in range(args.repeat):
            wall, cpu, stages = ours(root, env)
            our_walls.append(wall)
            resampled = pd.read_parquet(root / "data" / "resample" / CORPUS / "status.parquet")
            print(f"\n[this project, run {i + 1}] {wall:.1f} s wall, {cpu:.1f} CPU s; crop ok "
                  f"{stages['crop']['ok']} of {len(videos)}; {int(resampled['detail.n_frames'].sum())} frames "
                  f"at 25 fps")
            for stage in STAGES:
                s = stages[stage]
                print(f"  {stage:9} command {s['wall']:6.2f} s, per-video work {s['work']:6.2f} s, "
                      f"rest {s['wall'] - s['work']:5.2f} s; work by kind: {s.get('kinds', {})}")
            print(f"  DVC and the rest: {wall - sum(s['wall'] for s in stages.values()):.2f} s", flush=True)
            if not args.skip_peer:
                wall, cpu, summary = peer(videos, tmp / "peer", args.peer_python, args.auto_avsr.resolve(), peer_env)
                peer_walls.append(wall)
                print(f"[auto_avsr, run {i + 1}] {wall:.1f} s wall, {cpu:.1f} CPU s; {summary}", flush=True)
        line = f"\nthis project: median {statistics.median(our_walls):.1f} s (min {min(our_walls):.1f})"
        if peer_walls:
            line += (f"; auto_avsr: median {statistics.median(peer_walls):.1f} s (min {min(peer_walls):.1f}); "
                     f"ratio (auto_avsr / this project, medians): "
                     f"{statistics.median(peer_walls) / statistics.median(our_walls):.2f} (of the fastest runs: "
                     f"{min(peer_walls) / min(our_walls):.2f})")
        print(line)


if __name__ == "__main__":
    main()
