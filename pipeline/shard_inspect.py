"""Inspecting shards: what is inside, in words and pictures; and per-stage status counts.

    python -m pipeline shards inspect [CORPUS] [--json]
    python -m pipeline shards inspect [CORPUS] --key KEY --png FILE
    python -m pipeline shards inspect [CORPUS] --key KEY --png FILE --corrupt TYPE:LEVEL

The table gives, per corpus and split: samples, videos, hours, labels, methods, QC figures (fraction of
interpolated frames, sync confidence, mouth centring) and the failures of every stage grouped by reason
(each video counted once, at the first stage that did not pass it). `--key` renders a contact sheet of one
sample: its mouth frames with landmarks, its aligned 256x256 face and its audio waveform; with `--corrupt`
its clean mouth strip above the same frames rendered with a corruption (what the robustness stage scores).
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from preprocess import paths
from pipeline.corpora import load_corpora, load_params
from pipeline.stages import PER_CORPUS_STAGES as STAGES
from preprocess import shardformat
from preprocess.records import read_record
from preprocess.settings import section

if TYPE_CHECKING:  # imported where used: the stage commands import this module (the CLI's parser) and skip pandas
    import pandas as pd


# ----------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of `shards inspect` (the caller makes the subparser)."""
    parser.add_argument("corpus", nargs="?", help="one registered corpus (default: all)")
    parser.add_argument("--key", help="a sample key (<corpus>__<video_id>__<segment>) to draw")
    parser.add_argument("--png", help="where to write the contact sheet of --key (default: <key>.png)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--corrupt", metavar="TYPE:LEVEL",
                        help="with --key: draw the sample's clean mouth strip beside the same frames rendered "
                             "with this corruption on the full frames (as the robustness stage scores them)")
    return parser


def main(args: argparse.Namespace) -> int:
    corpora = _corpora(args.corpus)
    if args.key:
        png = Path(args.png or f"{args.key}.png")
        info = corruption_strip(args.key, png, corpora, args.corrupt) if getattr(args, "corrupt", None) else \
            contact_sheet(args.key, png, corpora)
        print(json.dumps(info, indent=1, sort_keys=True, default=str) if args.json else
              f"wrote {png}: {args.key} ({info['n_frames']} frames, split {info['split']}, label {info['label']})")
        return 0
    result = summary(corpora)
    print(json.dumps(result, indent=1, sort_keys=True, default=str) if args.json else render(result))
    return 0


def _corpora(name: str | None) -> list[str]:
    known = sorted(load_corpora())
    if name is None:
        return known
    if name not in known:
        raise KeyError(f"corpus '{name}' is not registered in params.yaml (registered: {', '.join(known) or 'none'})")
    return [name]


# ------------------------------------------------------------------------------------------- summary
def read_shard_manifest(corpus: str) -> pd.DataFrame | None:
    import pandas as pd

    from preprocess.crop.pack import shard_dir  # here, not at the top: every `python -m pipeline` imports this

    path = shard_dir(corpus) / "manifest.parquet"
    return pd.read_parquet(path) if path.exists() else None


def _video_ids(corpus: str) -> list[str]:
    from preprocess.fileio import read_parquet

    path = paths.source_manifest_path(corpus)
    return read_parquet(path, columns=["video_id"]).column("video_id").to_pylist() if path.exists() else []


def _generic(reason: str) -> str:
    """Reasons differ in their numbers ("too short: 12 frames"); group them without."""
    return re.sub(r"\d+(\.\d+)?", "N", reason or "")


def failures(corpus: str) -> list[dict]:
    """Every video not ok, counted once at the first stage that did not pass it, grouped by reason."""
    groups: dict[tuple, dict] = {}
    for video_id in _video_ids(corpus):
        for stage in STAGES:
            record = read_record(stage, corpus, video_id)
            if record is None:
                break  # pending from here on, not a failure
            if record.status != "ok":
                if record.details.get("upstream"):
                    continue  # a mere echo of an earlier stage's failure
                key = (stage, record.status, _generic(record.reason))
                entry = groups.setdefault(key, {"stage": stage, "status": record.status, "reason": record.reason,
                                                "videos": 0, "examples": []})
                entry["videos"] += 1
                if len(entry["examples"]) < 3:
                    entry["examples"].append(video_id)
                break
    return sorted(groups.values(), key=lambda g: (STAGES.index(g["stage"]), -g["videos"], g["reason"]))


def _counts(series: pd.Series) -> dict:
    return {str(k): int(v) for k, v in series.fillna("-").value_counts().sort_index().items()}


def pretrain_min_frames() -> int:
    """pretrain.data.min_frames of params.yaml, read as the trainer reads it."""
    from train.data import LoaderConfig  # torch: only `shards inspect` of a pretrain corpus gets here

    return section(load_params(), "pretrain.data", LoaderConfig).min_frames


def summary(corpora: list[str]) -> dict:
    import pandas as pd

    out = {}
    roles = {name: c.role for name, c in load_corpora().items()}
    min_frames = pretrain_min_frames() if any(roles.get(c) == "pretrain" for c in corpora) else None
    for corpus in corpora:
        table = read_shard_manifest(corpus)
        splits = {}
        if table is not None:
            for split, rows in table.groupby("split", sort=True):
                conf = pd.to_numeric(rows.sync_confidence, errors="coerce")
                splits[split] = {
                    "samples": int(len(rows)), "videos": int(rows.video_id.nunique()),
                    "shards": int(rows.shard.nunique()), "hours": round(float(rows.seconds.sum()) / 3600, 4),
                    "labels": _counts(rows.label), "methods": _counts(rows.method),
                    "interpolated_fraction": round(float(np.average(rows.interpolated_fraction,
                                                                    weights=rows.n_frames)), 4),
                    "outlier_frames": int(rows.outlier_frames.sum()),
                    "sync_confidence_median": None if conf.isna().all() else round(float(conf.median()), 3),
                    "mouth_offset_mean": round(float(rows.mouth_offset_mean.mean()), 3),
                    "mouth_offset_max": round(float(rows.mouth_offset_max.max()), 3),
                    "without_audio": int((~rows.has_audio.astype(bool)).sum()),
                    "landmark_backend": _counts(rows.landmark_backend),
                }
                if roles.get(corpus) == "pretrain":  # clips the trainer leaves out (pretrain.data.min_frames)
                    splits[split]["under_min_frames"] = int((rows.n_frames < min_frames).sum())
        out[corpus] = {"packed": table is not None, "splits": splits, "failures": failures(corpus),
                       "videos": len(_video_ids(corpus))}
        if roles.get(corpus) == "pretrain":
            out[corpus]["pretrain_min_frames"] = min_frames
    return out


def render(result: dict) -> str:
    import pandas as pd

    lines = []
    for corpus, info in result.items():
        lines.append(f"== {corpus}: {info['videos']} source videos")
        if not info["packed"]:
            lines.append("   no shards yet (run the crop stage)")
        if info["splits"]:
            rows = []
            for split, s in info["splits"].items():
                rows.append({"split": split, "samples": s["samples"], "videos": s["videos"], "shards": s["shards"],
                             "hours": s["hours"], "labels": _fmt(s["labels"]), "methods": _fmt(s["methods"]),
                             "interp": s["interpolated_fraction"], "outliers": s["outlier_frames"],
                             "sync_conf": s["sync_confidence_median"],
                             "mouth_off": s["mouth_offset_mean"], "no_audio": s["without_audio"],
                             "landmarks": _fmt(s["landmark_backend"]),
                             **({"<min_frames": s["under_min_frames"]} if "under_min_frames" in s else {})})
            lines += ["   " + line for line in pd.DataFrame(rows).to_string(index=False).splitlines()]
            if "pretrain_min_frames" in info:
                lines.append(f"   <min_frames: samples shorter than pretrain.data.min_frames = "
                             f"{info['pretrain_min_frames']} frames, not used for pretraining")
        if info["failures"]:
            lines.append("   not in the shards:")
            for f in info["failures"]:
                lines.append(f"   {f['videos']:>6} {f['status']:<7} at {f['stage']:<8} {f['reason']}"
                             f"  (e.g. {', '.join(f['examples'])})")
        elif info["packed"]:
            lines.append("   no failures")
    return "\n".join(lines)


def _fmt(counts: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())


# -------------------------------------------------------------------------------------- one sample
def find_sample(key: str, corpora: list[str]) -> tuple[str, dict]:
    for corpus in corpora:
        table = read_shard_manifest(corpus)
        if table is not None:
            hit = table[table.key == key]
            if len(hit):
                return corpus, hit.iloc[0].to_dict()
    raise KeyError(f"no sample with key {key!r} in the shard manifests of {', '.join(corpora) or 'no corpus'}")


def corpus_sample(corpus: str, shard: str, key: str) -> dict:
    """The fields of one sample of a corpus, straight from its shard."""
    from preprocess.crop.pack import shard_dir

    return shardformat.read_sample(shard_dir(corpus) / shard, key)


def _aligned_face(corpus: str, sample: dict) -> np.ndarray | None:
    """The aligned face of the middle frame, from the resampled video and the align stage's transform."""
    from preprocess.align import stage as align_stage
    from preprocess.align.mouth import aligned_face
    from preprocess.align.align_video import load_aligned

    meta = sample["json"]
    npz = align_stage.output_path(corpus, meta["video_id"])
    video = paths.stage_dir("resample", corpus) / "video" / f"{meta['video_id']}.mkv"
    if not npz.exists() or not video.exists():
        return None
    arrays, _ = load_aligned(npz)
    rows = np.flatnonzero(arrays["piece"] == meta["segment"])
    row = rows[len(rows) // 2]
    target = int(arrays["frame"][row])
    from preprocess.media import iter_frame_batches

    seen = 0
    for batch in iter_frame_batches(video, batch=32):
        if seen + len(batch) > target:
            return aligned_face(batch[target - seen], arrays["transforms"][row])
        seen += len(batch)
    return None


def contact_sheet(key: str, png: Path, corpora: list[str]) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from preprocess.align import geometry

    corpus, row = find_sample(key, corpora)
    sample = corpus_sample(corpus, row["shard"], key)
    video, audio, lms, meta = sample["video.npy"], sample["audio.npy"], sample["landmarks.npy"], sample["json"]
    t = len(video)
    picks = np.unique(np.linspace(0, t - 1, min(t, 12)).round().astype(int))
    face = _aligned_face(corpus, sample)
    fig = plt.figure(figsize=(12, 9), dpi=100)
    grid = fig.add_gridspec(4, 6)
    for i, frame_index in enumerate(picks):
        ax = fig.add_subplot(grid[i // 4, i % 4])
        ax.imshow(video[frame_index], cmap=None if video.ndim == 4 else "gray", vmin=0, vmax=255)
        ax.scatter(lms[frame_index, :, 0], lms[frame_index, :, 1], s=3, c="lime")
        ax.scatter(lms[frame_index, 48:68, 0], lms[frame_index, 48:68, 1], s=3, c="red")
        ax.set_xlim(-0.5, video.shape[2] - 0.5)
        ax.set_ylim(video.shape[1] - 0.5, -0.5)
        ax.set_title(f"frame {meta['start_frame'] + frame_index}", fontsize=7)
        ax.axis("off")
    ax = fig.add_subplot(grid[0:2, 4:6])
    if face is not None:
        ax.imshow(face)
        ax.scatter(geometry.TEMPLATE[:, 0], geometry.TEMPLATE[:, 1], s=8, c="cyan")
        ax.set_title("aligned face (middle frame), template points", fontsize=8)
    else:
        ax.text(0.5, 0.5, "aligned face unavailable\n(align or resample output missing)", ha="center")
    ax.axis("off")
    ax = fig.add_subplot(grid[2:4, 4:6])
    ax.axis("off")
    ax.text(0, 1, "\n".join(f"{k}: {meta[k]}" for k in sorted(meta) if k != "qc") +
            "\n" + "\n".join(f"qc.{k}: {v}" for k, v in meta.get("qc", {}).items()),
            va="top", fontsize=7, family="monospace")
    ax = fig.add_subplot(grid[3, 0:4])
    wave = audio.reshape(-1)
    ax.plot(np.arange(len(wave)) / meta["sample_rate"], wave, lw=0.4)
    ax.set_xlim(0, len(wave) / meta["sample_rate"])
    ax.set_ylim(-1, 1)
    ax.set_xlabel("seconds")
    ax.set_title("audio (16 kHz)" + ("" if meta.get("has_audio", True) else " - none in the source: zeros"),
                 fontsize=8)
    fig.suptitle(f"{key}  ({corpus}, {meta['split']}, {meta['label']}, {t} frames, "
                 f"landmarks: {meta['landmark_backend']})", fontsize=9)
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    plt.close(fig)
    return {"key": key, "corpus": corpus, "png": str(png), "n_frames": t, "split": meta["split"],
            "label": meta["label"], "shard": row["shard"]}


def corpus_preview(corpus: str, png: Path, n: int = 16) -> int:
    """A grid of the middle mouth frame (with its lip landmarks) of up to `n` samples of `corpus`, spread
    over its sorted keys: a glance at what the shards hold. Returns the number of samples drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = read_shard_manifest(corpus)
    if table is None or not len(table):
        raise KeyError(f"corpus '{corpus}' has no shards yet (run the crop stage)")
    table = table.sort_values("key").reset_index(drop=True)
    rows = table.iloc[np.unique(np.linspace(0, len(table) - 1, min(n, len(table))).round().astype(int))]
    cols = min(4, len(rows))
    fig, axes = plt.subplots(-(-len(rows) // cols), cols, figsize=(2.4 * cols, 2.6 * -(-len(rows) // cols)),
                             dpi=100, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, row in zip(axes.flat, rows.itertuples()):
        sample = corpus_sample(corpus, row.shard, row.key)
        video, lms = sample["video.npy"], sample["landmarks.npy"]
        mid = len(video) // 2
        ax.imshow(video[mid], cmap=None if video.ndim == 4 else "gray", vmin=0, vmax=255)
        ax.scatter(lms[mid, 48:68, 0], lms[mid, 48:68, 1], s=2, c="red")
        ax.set_title(f"{row.video_id[:18]} {row.label} {row.split}\n{row.n_frames} fr, sync "
                     f"{row.sync_confidence:.2f}", fontsize=6)
    fig.suptitle(f"{corpus}: {len(table)} samples, middle frame of {len(rows)}", fontsize=9)
    fig.tight_layout()
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, metadata={"Software": None})  # no version stamp: the same shards give the same picture
    plt.close(fig)
    return len(rows)


def corruption_strip(key: str, png: Path, corpora: list[str], corrupt: str) -> dict:
    """Two rows of the sample's mouth frames: as packed in its shard (clean), and rendered again from the
    resampled video with `corrupt` ("TYPE:LEVEL") on the full frames, warped by the same clean-frame
    transforms (preprocess/corrupted_crops.py; block positions seeded by the video id, as in the stage)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from preprocess.align import stage as align_stage
    from preprocess.corrupt import Corruption, RobustnessParams
    from preprocess.corrupted_crops import load_geometry, render

    robustness = section(load_params(), "robustness", RobustnessParams)
    corruption = Corruption.parse(corrupt, robustness.levels)
    corpus, row = find_sample(key, corpora)
    sample = corpus_sample(corpus, row["shard"], key)
    clean, meta = sample["video.npy"], sample["json"]
    npz = align_stage.output_path(corpus, meta["video_id"])
    video = paths.stage_dir("resample", corpus) / "video" / f"{meta['video_id']}.mkv"
    missing = [str(p) for p in (npz, video) if not p.exists()]
    if missing:
        raise FileNotFoundError(f"cannot render {key} again: {', '.join(missing)} missing (rerun resample and align)")
    piece, frames, transforms, color = load_geometry(npz)
    rows = piece == meta["segment"]
    bad = render(video, frames[rows], transforms[rows], color, corruption, robustness, meta["video_id"])
    picks = np.unique(np.linspace(0, len(clean) - 1, min(len(clean), 8)).round().astype(int))
    fig, axes = plt.subplots(2, len(picks), figsize=(1.6 * len(picks), 3.8), dpi=100, squeeze=False)
    for col, i in enumerate(picks):
        for r, (crops, name) in enumerate(((clean, "clean"), (bad, str(corruption)))):
            ax = axes[r, col]
            ax.imshow(crops[i], cmap=None if crops.ndim == 4 else "gray", vmin=0, vmax=255)
            ax.set_title(f"{name}, frame {meta['start_frame'] + i}", fontsize=6)
            ax.axis("off")
    diff = float(np.abs(clean.astype(np.int16) - bad.astype(np.int16)).mean())
    level = "" if corruption.level == 0 else f" = {robustness.levels.parameter(corruption)}"
    fig.suptitle(f"{key}: clean (top) and {corruption}{level} (bottom), landmarks from the clean frames; "
                 f"mean |difference| {diff:.2f} grey levels", fontsize=8)
    fig.tight_layout()
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, metadata={"Software": None})
    plt.close(fig)
    return {"key": key, "corpus": corpus, "png": str(png), "n_frames": len(clean), "split": meta["split"],
            "label": meta["label"], "shard": row["shard"], "corruption": str(corruption),
            "mean_abs_difference": round(diff, 4)}
