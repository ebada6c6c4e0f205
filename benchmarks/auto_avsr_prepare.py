"""The peer's whole preparation of a list of videos, with its own code: auto_avsr's `preparation/` (mediapipe
path), as its preprocess_lrs2lrs3.py does it per video: decode, mediapipe face detection on every frame,
landmark interpolation, mean-face warp and 96x96 mouth crop, audio to 16 kHz mono, then the crop video and
the wav written. Run by bench_vs_auto_avsr.py in the peer's own environment (mediapipe with its legacy
`solutions` API, a torchvision that still has `io.read_video`); nothing of this project is imported.

    PEER_PYTHON benchmarks/auto_avsr_prepare.py --auto-avsr CLONE --out DIR VIDEO...
"""
from __future__ import annotations

import argparse
import os
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--auto-avsr", required=True, help="a clone of github.com/mpc001/auto_avsr")
    parser.add_argument("--out", required=True)
    parser.add_argument("videos", nargs="+")
    args = parser.parse_args()
    sys.path.insert(0, os.path.join(args.auto_avsr, "preparation"))
    from data.data_module import AVSRDataLoader  # the peer's code from here on
    from utils import save_vid_aud

    video_loader = AVSRDataLoader(modality="video", detector="mediapipe", convert_gray=False)
    audio_loader = AVSRDataLoader(modality="audio")
    done = frames = 0
    for path in args.videos:
        start = time.perf_counter()
        try:
            video = video_loader.load_data(path)
            audio = audio_loader.load_data(path)
        except (UnboundLocalError, TypeError, OverflowError, AssertionError) as exc:  # the peer skips these
            print(f"{path}: skipped by the peer ({type(exc).__name__})", file=sys.stderr)
            continue
        stem = os.path.splitext(os.path.basename(path))[0]
        save_vid_aud(os.path.join(args.out, stem + ".mp4"), os.path.join(args.out, stem + ".wav"), video, audio,
                     video_fps=25, audio_sample_rate=16000)
        done += 1
        frames += len(video)
        print(f"{path}: {len(video)} frames in {time.perf_counter() - start:.2f} s", file=sys.stderr)
    print(f"PEER {done} videos {frames} frames")


if __name__ == "__main__":
    main()
