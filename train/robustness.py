"""Robustness of the fine-tuned detector to corruptions (the `robustness` DVC stage; the paper's Figure 4).

    python -m train.robustness --params params.yaml --detector artifacts/finetune/detector.pt \
        --collect data/collect --align data/align --resample data/resample --out artifacts/robustness \
        --metrics metrics/robustness.json --plots plots/robustness --png plots/robustness_auc.png

For each selected video of the eval role (the collect stage's eval.json names the shards; the shard manifest
beside them gives each video's label, method and kept pieces) and each corruption of `robustness.types` at
every level, plus level 0: the mouth crops are rendered again from the resampled video with the corruption
applied to the full frames, warped by the align stage's transforms of the CLEAN frames (landmarks are not
recomputed on corrupted frames, as in the paper's protocol; preprocess/corrupted_crops.py), and scored exactly
as the evaluate stage scores (train/scoring.py: non-overlapping 25-frame clips per piece, video score = mean
clip logit). AUC (scikit-learn) per type and level over all selected videos, per corpus, and per Table 3
column (`evaluate.datasets`, or the eval corpora grouped by their `corpus add --dataset`: train/datasets.py).

One stage with a loop, not a `foreach` over type x level: the clean render (level 0) is shared by every type,
all results go into one metrics file and one figure, and DVC reruns the stage when the detector, the eval
data, the code or the `robustness` / `evaluate` params change (20x the evaluate cost: hence
`robustness.max_videos_per_corpus`, a deterministic selection dealt by label so both classes stay in).
Corrupted crops are not kept unless `robustness.keep_crops` asks (artifacts/robustness/crops/TYPE-LEVEL/).
"""
from __future__ import annotations

import os

# Idle OpenMP threads sleep instead of spinning (must be set before torch loads): on the shared 2-core machine
# the demo's run took 71 s of CPU spinning and 28 s sleeping, as `pipeline predict` measured for itself.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import av  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from preprocess import corrupt  # noqa: E402
from preprocess.ffmpeg import FFmpegError  # noqa: E402
from preprocess.corrupt import Corruption, CorruptionError, RobustnessParams  # noqa: E402
from preprocess.corrupted_crops import load_geometry, render  # noqa: E402
from preprocess.records import plain  # noqa: E402
from preprocess.shardformat import crops_to_gray  # noqa: E402
from preprocess.settings import load_yaml, section  # noqa: E402
from train.datasets import eval_datasets, table3_columns  # noqa: E402
from train.evaluate import EvaluateParams  # noqa: E402  (its batch size and Table 3 columns)
from train.metrics import labels01, summary  # noqa: E402
from train.scoring import load_detector, untrained_reason, video_clip_logits, video_score  # noqa: E402

CLEAN = "clean"  # the type of the level-0 rows: shared by every corruption type
COLUMNS = ["corpus", "video_id", "label", "method", "type", "level", "parameter", "n_clips", "score", "status",
           "reason"]
PROTOCOL = ("corruptions applied to the full 25 fps frames; landmarks and crop transforms are the align "
            "stage's, from the clean frames (not recomputed on corrupted frames)")


def eval_videos(collect: Path) -> pd.DataFrame:
    """One row per video of the eval role's test shards: corpus, video_id, label, method, pieces (segments)."""
    index = collect / "eval.json"
    if not index.is_file():
        return pd.DataFrame(columns=["corpus", "video_id", "label", "method", "pieces"])
    entries = [e for e in json.loads(index.read_text()).get("test", []) if int(e.get("samples", 0)) > 0]
    rows = []
    for folder, shards in _by_folder(entries).items():
        manifest = folder / "manifest.parquet"
        if not manifest.is_file():
            raise FileNotFoundError(f"{manifest} is missing: the crop stage writes it beside the shards")
        m = pd.read_parquet(manifest)
        m = m[m["shard"].isin(shards) & (m["split"] == "test")]
        for (corpus, video_id), g in m.groupby(["corpus", "video_id"], sort=True):
            first = g.iloc[0]
            method = plain(first.get("method"))
            rows.append({"corpus": corpus, "video_id": video_id, "label": str(first["label"]),
                         "method": None if method is None else str(method),
                         "pieces": sorted(int(s) for s in g["segment"])})
    return pd.DataFrame(rows, columns=["corpus", "video_id", "label", "method", "pieces"])


def _by_folder(entries: list[dict]) -> dict[Path, set[str]]:
    out: dict[Path, set[str]] = {}
    for e in entries:
        path = Path(e["path"])
        out.setdefault(path.parent, set()).add(path.name)
    return out


def select(videos: pd.DataFrame, per_corpus: int, seed: int) -> pd.DataFrame:
    """Up to `per_corpus` videos of each corpus (0: all): each label's videos in a seeded order (by video id
    hash, so adding videos moves few choices), dealt in turn, so a corpus with reals and fakes keeps both."""
    if per_corpus == 0 or videos.empty:
        return videos.sort_values(["corpus", "video_id"]).reset_index(drop=True)
    picked = []
    for _, g in videos.groupby("corpus", sort=True):
        queues = [sorted(part.to_dict("records"), key=lambda r: corrupt.video_seed(seed, r["video_id"]))
                  for _, part in g.groupby("label", sort=True)]
        dealt = [r for rank in range(max(map(len, queues))) for q in queues if rank < len(q) for r in [q[rank]]]
        picked += dealt[:per_corpus]
    return pd.DataFrame(picked, columns=videos.columns).sort_values(["corpus", "video_id"]).reset_index(drop=True)


def corrupted_piece_crops(video: Path, geometry: tuple, pieces: list[int], corruption: Corruption,
                          params: RobustnessParams, video_id: str) -> list[np.ndarray]:
    """The corrupted mouth crops of each kept piece of one video, as the detector reads them (grayscale).
    `geometry`: load_geometry's (piece, frame, transforms, colour) of its align output, read once per video."""
    piece, frame, transforms, color = geometry
    rows = np.isin(piece, pieces)
    crops = crops_to_gray(render(video, frame[rows], transforms[rows], color, corruption, params, video_id))
    kept = piece[rows]
    return [crops[kept == p] for p in pieces]


def score_pieces(detector, pieces: list[np.ndarray], device, batch_size: int) -> tuple[int, float | None]:
    """(clips, video score) over the pieces: the evaluate stage's rule (train/scoring.py)."""
    logits = np.concatenate([video_clip_logits(detector, p, device, batch_size) for p in pieces]) if pieces \
        else np.zeros(0, np.float32)
    return len(logits), (video_score(logits) if len(logits) else None)


def conditions(params: RobustnessParams) -> list[Corruption]:
    """Level 0 first (the clean render, computed once), then every type at every level."""
    return [Corruption(params.types[0], 0), *params.corruptions()]


def score_all(detector, videos: pd.DataFrame, align: Path, resample: Path, params: RobustnessParams, device,
              batch_size: int, keep_dir: Path | None = None, progress: bool = True) -> pd.DataFrame:
    """One row per (video, condition): its score or the reason it has none."""
    rows, todo, t0 = [], conditions(params), time.perf_counter()
    for i, v in enumerate(videos.to_dict("records")):
        started = time.perf_counter()
        video = resample / v["corpus"] / "video" / f"{v['video_id']}.mkv"
        npz = align / v["corpus"] / "aligned" / f"{v['video_id']}.npz"
        missing = [str(p) for p in (video, npz) if not p.is_file()]
        geometry = None if missing else load_geometry(npz)
        for c in todo:
            kind = CLEAN if c.level == 0 else c.type
            row = {"corpus": v["corpus"], "video_id": v["video_id"], "label": v["label"], "method": v["method"],
                   "type": kind, "level": c.level,
                   "parameter": None if c.level == 0 else params.levels.parameter(c), "n_clips": 0,
                   "score": np.nan, "status": "unscored", "reason": ""}
            if missing:
                row["reason"] = f"missing {', '.join(missing)}: rerun the resample and align stages"
                rows.append(row)
                continue
            try:
                pieces = corrupted_piece_crops(video, geometry, list(v["pieces"]), c, params, v["video_id"])
                n, score = score_pieces(detector, pieces, device, batch_size)
            except (FFmpegError, CorruptionError, ValueError, OSError, av.error.FFmpegError) as exc:
                # an unreadable or damaged file: a row with the reason, the other videos go on
                row["reason"] = f"{c}: {exc}"
                rows.append(row)
                continue
            if keep_dir is not None:
                out = keep_dir / f"{kind}-{c.level}" / v["corpus"] / f"{v['video_id']}.npy"
                out.parent.mkdir(parents=True, exist_ok=True)
                np.save(out, np.concatenate(pieces), allow_pickle=False)
            if score is None:
                row["reason"] = "no kept piece holds a whole 25-frame clip"
            else:
                row.update(n_clips=n, score=score, status="scored")
            rows.append(row)
        if progress:
            print(f"robustness: video {i + 1}/{len(videos)} {v['corpus']}/{v['video_id']}: {len(todo)} renders "
                  f"in {time.perf_counter() - started:.1f} s ({time.perf_counter() - t0:.0f} s so far)",
                  file=sys.stderr, flush=True)
    return pd.DataFrame(rows, columns=COLUMNS)


def _table(df: pd.DataFrame, datasets: dict, threshold: float | None) -> dict:
    def part(d: pd.DataFrame) -> dict:
        s = d[d["status"] == "scored"]
        return {**summary(labels01(s["label"]), s["score"].to_numpy(np.float64), threshold),
                "videos": {"total": int(len(d)), "scored": int(len(s))}}

    out = {"all": part(df), "by_corpus": {c: part(g) for c, g in df.groupby("corpus", sort=True)}}
    if datasets:
        out["by_dataset"] = {str(n): part(df[df["corpus"].isin(list(cs))]) for n, cs in datasets.items()}
    return out


def metrics_of(df: pd.DataFrame, params: RobustnessParams, datasets: dict, threshold: float | None) -> dict:
    """{clean: table, corruptions: {type: {level: {parameter, table}}}}; a table gives AUC and accuracy over
    all selected videos, per corpus and per Table 3 column."""
    clean = df[df["type"] == CLEAN]
    out = {"clean": _table(clean, datasets, threshold), "corruptions": {}}
    for t in params.types:
        out["corruptions"][t] = {}
        for level in range(1, params.levels.count(t) + 1):
            part = df[(df["type"] == t) & (df["level"] == level)]
            out["corruptions"][t][str(level)] = {"parameter": params.levels.parameter(Corruption(t, level)),
                                                 **_table(part, datasets, threshold)}
    return out


def curves(metrics: dict, params: RobustnessParams) -> dict[str, list[dict]]:
    """Per type: [{level, parameter, auc}] from level 0 (the clean AUC) up; auc None where undefined."""
    clean = (metrics.get("clean") or {}).get("all", {}).get("auc")
    out = {}
    for t in params.types:
        points = [{"level": 0, "parameter": None, "auc": clean}]
        for level, m in ((metrics.get("corruptions") or {}).get(t) or {}).items():
            points.append({"level": int(level), "parameter": m["parameter"], "auc": m["all"]["auc"]})
        out[t] = points
    return out


def draw(points: dict[str, list[dict]], png: Path, title: str, note: str = "") -> None:
    """AUC against level, one line per type (the paper's Figure 4)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for t, pts in points.items():
        xs = [p["level"] for p in pts]
        ys = [np.nan if p["auc"] is None else p["auc"] for p in pts]
        ax.plot(xs, ys, marker="o", label=t)
    ax.set_xlabel("corruption level (0: clean)")
    ax.set_ylabel("AUC (all selected eval videos)")
    ax.set_ylim(0, 1.02)
    ax.set_xticks(sorted({p["level"] for pts in points.values() for p in pts}) or [0])
    ax.grid(alpha=0.3)
    if points:
        ax.legend(fontsize=8)
    if note:
        ax.text(0.5, 0.5, note, ha="center", va="center", transform=ax.transAxes, fontsize=9, wrap=True)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, metadata={"Software": None})  # no version stamp: same inputs, same bytes
    plt.close(fig)


def run(detector_path: str, collect: Path, align: Path, resample: Path, params: RobustnessParams,
        datasets: dict, batch_size: int, out: Path, device, progress: bool = True) -> tuple[pd.DataFrame, dict]:
    """-> (per video and condition scores, metrics); an untrained detector or no eval corpus gives empty but
    valid results that say why."""
    base = {"protocol": PROTOCOL, "types": list(params.types),
            "levels": {t: list(getattr(params.levels, t)) for t in params.types},
            "max_videos_per_corpus": params.max_videos_per_corpus}
    why = untrained_reason(detector_path)
    if why is not None:
        print(f"robustness: nothing to do: the detector was not trained: {why}", file=sys.stderr, flush=True)
        return pd.DataFrame(columns=COLUMNS), {**base, "detector": {"trained": False, "reason": why}}
    det, meta = load_detector(detector_path, device)
    threshold = meta.get("val_threshold")
    listed = eval_videos(collect)
    chosen = select(listed, params.max_videos_per_corpus, params.seed)
    if chosen.empty:
        print("robustness: no video of role eval in the shards: nothing to score", file=sys.stderr, flush=True)
    keep = out / "crops" if params.keep_crops else None
    df = score_all(det, chosen, align, resample, params, device, batch_size, keep, progress)
    df = df.sort_values(["corpus", "video_id", "type", "level"], kind="stable").reset_index(drop=True)
    clean = df[df["type"] == CLEAN]
    metrics = {**base, "detector": {"trained": True, "init": meta.get("init"), "val_threshold": threshold},
               "videos": {"listed": int(len(listed)), "selected": int(len(chosen)),
                          "scored_clean": int((clean["status"] == "scored").sum())},
               "unscored_reasons": {str(k): int(n) for k, n in
                                    df[df["status"] != "scored"]["reason"].value_counts().items()},
               **metrics_of(df, params, datasets, threshold)}
    return df, metrics


def write_outputs(df: pd.DataFrame, metrics: dict, params: RobustnessParams, out: Path, metrics_path: Path,
                  plots: Path, png: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    df.astype({"level": "int64", "n_clips": "int64", "score": "float64"}) \
        .to_parquet(out / "scores.parquet", index=False)
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps(metrics, indent=1, sort_keys=True))
    plots.mkdir(parents=True, exist_ok=True)
    for old in plots.glob("*.json"):
        old.unlink()
    trained = metrics["detector"]["trained"]
    points = curves(metrics, params) if trained else {t: [] for t in params.types}
    for t in corrupt.TYPES:  # every type's file, empty when not evaluated: dvc.yaml's plot names all four
        (plots / f"{t}.json").write_text(json.dumps(points.get(t, []), indent=1))
    if not trained:
        note = f"nothing trained: {metrics['detector']['reason']}"
    elif not metrics["videos"]["selected"]:
        note = "no eval video to score"
    else:
        note = ""
    v = metrics.get("videos", {})
    draw(points, png, f"AUC under corruptions ({v.get('scored_clean', 0)} eval videos; landmarks from clean frames)",
         note)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--detector", default="artifacts/finetune/detector.pt")
    p.add_argument("--collect", default="data/collect", help="the collect stage's folder (eval.json)")
    p.add_argument("--align", default="data/align", help="folder of the align stage's CORPUS/aligned/*.npz")
    p.add_argument("--resample", default="data/resample", help="folder of CORPUS/video/*.mkv")
    p.add_argument("--out", default="artifacts/robustness", help="scores.parquet (and crops/ with keep_crops)")
    p.add_argument("--metrics", default="metrics/robustness.json")
    p.add_argument("--plots", default="plots/robustness", help="one AUC-against-level JSON per type")
    p.add_argument("--png", default="plots/robustness_auc.png")
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args(argv)
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        all_params = load_yaml(a.params)
        params = section(all_params, "robustness", RobustnessParams)
        ev = section(all_params, "evaluate", EvaluateParams)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        df, metrics = run(a.detector, Path(a.collect), Path(a.align), Path(a.resample), params,
                          table3_columns(ev.datasets, eval_datasets(Path(a.collect))),
                          ev.batch_size, Path(a.out), device)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    write_outputs(df, metrics, params, Path(a.out), Path(a.metrics), Path(a.plots), Path(a.png))
    v = metrics.get("videos", {"selected": 0, "listed": 0})
    print(f"robustness: {v['selected']} of {v['listed']} eval videos x {len(conditions(params))} conditions -> "
          f"{a.metrics}, {a.plots}, {a.png}", file=sys.stderr)


if __name__ == "__main__":
    main()
