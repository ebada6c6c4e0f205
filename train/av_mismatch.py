"""The zero-shot audio-visual mismatch score of the pretrained pair (the `av_mismatch` DVC stage): no fake labels.

    python -m train.av_mismatch --params params.yaml --encoder artifacts/pretrain/encoder.pt \
        --collect data/collect --out artifacts/av_mismatch/scores.parquet

Pretraining taught the pair that a mouth window and the audio of the same 2 s belong together. For each
video window (the pretraining window, every `stride` frames) the score asks where the window's own audio
ranks among the audio windows of the same segment shifted by at least `min_offset` frames: the fraction of
those that the video embedding prefers to its own audio (ties count against it). A real video's own audio
wins, so its score is near 0; a video whose mouth does not follow its sound (lip-sync fakes, dubbing, another
clip's audio) scores around 0.5, as its own audio is one more unrelated window. Ranks inside the same video
need no calibration across speakers, recordings or corpora (the idea of AVAD, CVPR 2023, and SpeechForensics,
NeurIPS 2024). The video's score is the mean over all windows of its kept segments; null, with the reason,
for a video without audio or without a segment as long as one window.

Beside it, the baseline to beat: the weights-free correlation of mouth motion with the audio envelope that
the track stage measured for the chosen face (`energy_correlation`, from the shards' sample metadata).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from preprocess.settings import load_yaml, section
from preprocess.shardformat import decode_sample, iter_samples
from train.augment import AugmentConfig
from train.avpair import embed_segment, grid, load_pair

COLUMNS = ["corpus", "video_id", "split", "label", "method", "av_mismatch", "av_windows", "energy_correlation",
           "av_reason"]
ROLES = ("finetune", "eval")  # the test splits evaluate scores


@dataclass(frozen=True)
class MismatchParams:
    """params.yaml `av_mismatch:`."""
    stride: int = 25        # frames between the starts of scored video windows
    audio_stride: int = 5   # frames between the starts of the audio windows they are ranked against
    min_offset: int = 10    # audio windows at least this many frames away from the video window's own compete
    batch_size: int = 16

    def __post_init__(self):
        if min(self.stride, self.audio_stride, self.min_offset, self.batch_size) < 1:
            raise ValueError("av_mismatch.stride, audio_stride, min_offset and batch_size must be at least 1")
        if self.stride % self.audio_stride:
            raise ValueError(f"av_mismatch.stride ({self.stride}) must be a multiple of audio_stride "
                             f"({self.audio_stride}): each video window's own audio must be on the audio grid")


def window_ranks(z_video: np.ndarray, z_audio: np.ndarray, video_starts: list[int], audio_starts: list[int],
                 min_offset: int) -> np.ndarray:
    """Per video window: the fraction of competing audio windows (starts at least min_offset frames from its
    own) whose similarity to it is at least its own audio's. NaN where no audio window competes."""
    sim = z_video @ z_audio.T
    a = np.asarray(audio_starts)
    out = np.full(len(video_starts), np.nan)
    for i, s in enumerate(video_starts):
        own = int(np.flatnonzero(a == s)[0])
        rivals = np.abs(a - s) >= min_offset
        if rivals.any():
            out[i] = float(np.mean(sim[i, rivals] >= sim[i, own]))
    return out


def segment_ranks(model, video: np.ndarray, audio: np.ndarray, window: int, view: AugmentConfig,
                  params: MismatchParams, device="cpu") -> tuple[list[int], np.ndarray]:
    """(video window starts, their ranks) of one segment; empty when it is shorter than a window."""
    v_starts = grid(len(video), window, params.stride)
    if not v_starts:
        return [], np.empty(0)
    a_starts = grid(len(video), window, params.audio_stride)
    zv, za = embed_segment(model, video, audio, window, v_starts, a_starts, view, device, params.batch_size)
    return v_starts, window_ranks(zv, za, v_starts, a_starts, params.min_offset)


def pair_view(config: dict) -> tuple[int, AugmentConfig]:
    """The window and the evaluation view (centre crop, normalisation) the pair was pretrained with."""
    data = config["pretrain"]["data"]
    a = data["augment"]
    return int(data["window"]), AugmentConfig(crop=a["crop"], mean=a["mean"], std=a["std"])


def test_shards(collect: Path) -> list[str]:
    paths = []
    for role in ROLES:
        index = collect / f"{role}.json"
        if index.is_file():
            paths += [e["path"] for e in json.loads(index.read_text()).get("test", []) if int(e.get("samples", 0))]
    return paths


def score_shards(model, config: dict, paths: list[str], params: MismatchParams, device="cpu") -> pd.DataFrame:
    """One row per video of the shards: its mismatch score over all windows of its segments, and the mean
    energy correlation of its segments."""
    window, view = pair_view(config)
    videos: dict[tuple[str, str], dict] = {}
    t0, n = time.perf_counter(), 0
    for sample in iter_samples(paths):
        _, video, audio, meta = decode_sample(sample)
        row = videos.setdefault((meta["corpus"], meta["video_id"]), {
            "corpus": meta["corpus"], "video_id": meta["video_id"], "split": meta.get("split"),
            "label": meta.get("label"), "method": meta.get("method") or None, "ranks": [], "energy": [],
            "has_audio": False})
        corr = meta.get("sync_confidence")
        if meta.get("sync_method") in ("single-face", "av-energy") and corr is not None and np.isfinite(corr):
            row["energy"].append(float(corr))
        if meta.get("has_audio", True) is False:
            continue
        row["has_audio"] = True
        _, ranks = segment_ranks(model, video, audio, window, view, params, device)
        row["ranks"].extend(r for r in ranks if np.isfinite(r))
        n += 1
        if n % 50 == 0:
            print(f"av_mismatch: {n} segments ({n / (time.perf_counter() - t0):.1f}/s)", file=sys.stderr, flush=True)
    rows = []
    for row in videos.values():
        ranks, energy, has_audio = row.pop("ranks"), row.pop("energy"), row.pop("has_audio")
        reason = ("" if ranks else f"no kept segment holds a whole {window}-frame window" if has_audio else
                  "the video has no audio")
        rows.append({**row, "av_mismatch": float(np.mean(ranks)) if ranks else np.nan, "av_windows": len(ranks),
                     "energy_correlation": float(np.mean(energy)) if energy else np.nan, "av_reason": reason})
    print(f"av_mismatch: {n} segments of {len(rows)} videos in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.sort_values(["corpus", "video_id"], kind="stable").reset_index(drop=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--encoder", default="artifacts/pretrain/encoder.pt")
    p.add_argument("--collect", default="data/collect")
    p.add_argument("--out", default="artifacts/av_mismatch/scores.parquet")
    a = p.parse_args(argv)
    params = section(load_yaml(a.params), "av_mismatch", MismatchParams)
    torch.manual_seed(0)
    try:
        model, config = load_pair(a.encoder)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    df = score_shards(model, config, test_shards(Path(a.collect)), params)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.astype({"av_mismatch": "float64", "energy_correlation": "float64", "av_windows": "int64"}) \
        .to_parquet(out, index=False)


if __name__ == "__main__":
    main()
