"""Video-level evaluation of the fine-tuned detector (the `evaluate` DVC stage; paper Sec. 4.2-4.4).

    python -m train.evaluate --params params.yaml --detector artifacts/finetune/detector.pt \
        --collect data/collect --scores artifacts/evaluate/scores.parquet --metrics metrics/evaluate.json \
        --plots plots/evaluate

Scores the test split of the finetune corpora (Table 1, in-domain) and of the eval corpora (Table 3,
cross-dataset): per video the mean clip logit over the non-overlapping 25-frame clips of all its kept
segments. Every video of those corpora' test splits gets a row; one that reached no shard carries the reason
its crop-stage status row gives (that row names the earlier stage that dropped it). Metrics per group,
corpus, method and dataset (Table 3's columns: `evaluate.datasets`, or the eval corpora grouped by their
`corpus add --dataset`): AUC, accuracy at probability 0.5 and at the threshold
chosen on val during fine-tuning, and how many videos were scored out of how many.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from preprocess.settings import load_yaml, section
from train.datasets import auc_note, eval_datasets, table3_columns
from train.distributed import cleanup, init_from_env
from train.metrics import auc, labels01, roc_points, summary
from train.scoring import load_detector, untrained_reason
from train.videoscores import VideoScore, score_videos

GROUPS = {"finetune_test": ("finetune", "test"), "eval": ("eval", "test")}
COLUMNS = ["group", "corpus", "video_id", "split", "label", "method", "n_clips", "n_segments", "score",
           "probability", "status", "reason"]
ZERO_SHOT = ["av_mismatch", "energy_correlation", "av_reason"]  # from the av_mismatch stage, by video


@dataclass(frozen=True)
class EvaluateParams:
    """params.yaml `evaluate:`."""
    batch_size: int = 32  # clips per forward
    datasets: dict = field(default_factory=dict)  # Table 3 columns: NAME -> [corpora]; empty: one per eval corpus


def group_entries(collect: Path, role: str, split: str) -> list[dict]:
    path = collect / f"{role}.json"
    if not path.is_file():
        return []
    return [e for e in json.loads(path.read_text()).get(split, []) if int(e.get("samples", 0)) > 0]


def role_corpora(collect: Path, role: str) -> list[str]:
    """Corpora of a role that the collect stage saw (packed, possibly with no sample left)."""
    path = collect / "summary.json"
    if not path.is_file():
        return []
    return sorted(json.loads(path.read_text()).get("roles", {}).get(role, {}))


def unscored_rows(corpus: str, split: str, scored: set[str], manifests: Path, crop_status: Path,
                  keep=lambda row: True) -> list[dict]:
    """A row for each video of the corpus's `split` in its source manifest that got no score, with the reason."""
    manifest_path = manifests / f"{corpus}.parquet"
    if not manifest_path.is_file():
        return []
    videos = pd.read_parquet(manifest_path)
    videos = videos[videos["split"] == split]
    status_path = crop_status / corpus / "status.parquet"
    status = pd.read_parquet(status_path).set_index("video_id") if status_path.is_file() else None
    rows = []
    for row in videos.to_dict("records"):
        if row["video_id"] in scored or not keep(row):
            continue
        if status is None or row["video_id"] not in status.index:
            reason = "not processed yet: run `dvc repro` (no crop-stage status row)"
        else:
            s = status.loc[row["video_id"]]
            reason = (f"crop {s['status']}: {s['reason']}" if s["status"] != "ok" else
                      "no kept segment holds a whole 25-frame clip")
        method = row.get("method")
        rows.append({"corpus": corpus, "video_id": row["video_id"], "split": split, "label": row.get("label"),
                     "method": None if method is None or (isinstance(method, float) and np.isnan(method)) else method,
                     "n_clips": 0, "n_segments": 0, "score": np.nan, "probability": np.nan,
                     "status": "unscored", "reason": reason})
    return rows


def scored_row(v: VideoScore) -> dict:
    d = asdict(v)
    if v.score is None:
        return {**d, "score": np.nan, "probability": np.nan, "status": "unscored",
                "reason": "no kept segment holds a whole 25-frame clip"}
    return {**d, "probability": float(1 / (1 + np.exp(-v.score))), "status": "scored", "reason": ""}


def metrics_of(df: pd.DataFrame, threshold: float | None) -> dict:
    ok = df[df["status"] == "scored"]
    return {**summary(labels01(ok["label"]), ok["score"].to_numpy(np.float64), threshold), **zero_shot_aucs(df)}


def zero_shot_aucs(df: pd.DataFrame) -> dict:
    """AUC of the pretrained pair's audio-visual mismatch score over the videos that have one, and of the
    weights-free baseline (the track stage's mouth-motion/audio-energy correlation, low = mismatch)."""
    if "av_mismatch" not in df:
        return {}
    av, en = df[df["av_mismatch"].notna()], df[df["energy_correlation"].notna()]
    return {"av_mismatch_auc": auc(labels01(av["label"]), av["av_mismatch"].to_numpy(np.float64)),
            "energy_mismatch_auc": auc(labels01(en["label"]), -en["energy_correlation"].to_numpy(np.float64)),
            "n_av_mismatch": int(len(av))}


def with_zero_shot(df: pd.DataFrame, av_scores: Path | None) -> pd.DataFrame:
    """The per-video table with the av_mismatch stage's columns; a video it has no score for carries why."""
    if av_scores is None:
        return df
    if av_scores.is_file():
        av = pd.read_parquet(av_scores)[["corpus", "video_id", *ZERO_SHOT]]
        df = df.merge(av, on=["corpus", "video_id"], how="left")
    else:
        df = df.assign(av_mismatch=np.nan, energy_correlation=np.nan,
                       av_reason=f"no audio-visual mismatch scores at {av_scores} (`dvc repro av_mismatch`)")
    missing = df["av_reason"].isna()
    df.loc[missing, "av_reason"] = "not in the shards: " + df.loc[missing, "reason"].astype(str)
    return df


def group_metrics(df: pd.DataFrame, threshold: float | None) -> dict:
    """Overall, per corpus and per method (its fakes against every real of the group)."""
    ok = df[df["status"] == "scored"]
    reals = ok[ok["label"] == "real"]
    reasons = df[df["status"] != "scored"]["reason"].value_counts()
    out = {"videos": {"total": int(len(df)), "scored": int(len(ok))},
           "unscored_reasons": {str(k): int(n) for k, n in reasons.items()},
           "overall": metrics_of(df, threshold),
           "by_corpus": {c: metrics_of(g, threshold) for c, g in df.groupby("corpus", sort=True)},
           "by_method": {}}
    for method, fakes in ok[ok["label"] == "fake"].groupby(ok["method"].fillna("unknown"), sort=True):
        out["by_method"][str(method)] = metrics_of(pd.concat([reals, fakes]), threshold)
    return out


def dataset_metrics(df: pd.DataFrame, datasets: dict, eval_corpora: dict, threshold: float | None) -> dict:
    """Table 3 columns: each dataset is a list of corpora (its reals and fakes; e.g. FaceShifter's fakes with
    the FF++ originals of the test split); none given: the eval corpora ({name: registered dataset}) grouped by
    dataset (train/datasets.py). A column without both classes says why it has no AUC (auc_note)."""
    datasets = table3_columns(datasets, eval_corpora)
    out = {}
    for name, corpora in datasets.items():
        part = df[df["corpus"].isin(list(corpora)) & (df["split"] == "test")]
        figures = metrics_of(part, threshold)
        out[str(name)] = {"corpora": list(corpora), "videos": {"total": int(len(part)),
                                                             "scored": int((part["status"] == "scored").sum())},
                          **figures, "auc_note": auc_note(figures["n_real"], figures["n_fake"])}
    return out


def write_rocs(df: pd.DataFrame, curves: dict[str, pd.DataFrame], plots: Path) -> None:
    plots.mkdir(parents=True, exist_ok=True)
    for old in plots.glob("*.json"):
        old.unlink()
    for name, part in curves.items():
        ok = part[part["status"] == "scored"]
        points = roc_points(labels01(ok["label"]), ok["score"].to_numpy(np.float64))
        (plots / f"{name}.json").write_text(json.dumps(points, indent=1))


def evaluate(detector_path: str, collect: Path, manifests: Path, crop_status: Path, batch_size: int,
             datasets: dict, methods_only: tuple[str, ...] = (), groups: tuple[str, ...] = tuple(GROUPS),
             info=None, av_scores: Path | None = None) -> tuple[pd.DataFrame, dict]:
    """-> (per-video table, metrics). `methods_only`: keep reals and the fakes of these methods (LOMO).
    `av_scores`: the av_mismatch stage's table, joined by video (and its AUCs beside every detector AUC)."""
    from train.distributed import DistInfo

    info = info or DistInfo()
    why = untrained_reason(detector_path)
    if why is not None:
        print(f"evaluate: nothing to do: the detector was not trained: {why}", file=sys.stderr, flush=True)
        return pd.DataFrame(columns=COLUMNS), {"detector": {"trained": False, "reason": why}}
    det, meta = load_detector(detector_path, info.device)
    threshold = meta.get("val_threshold")

    def keep(m: dict) -> bool:
        return not methods_only or m.get("label") == "real" or m.get("method") in methods_only

    frames = []
    for group in groups:
        role, split = GROUPS[group]
        paths = [e["path"] for e in group_entries(collect, role, split)]
        videos = score_videos(det, paths, info.device, batch_size, keep, info.rank, info.world,
                              progress=f"evaluate {group}" if info.is_main else None)
        rows = [scored_row(v) for v in videos]
        done = {(r["corpus"], r["video_id"]) for r in rows}
        for corpus in role_corpora(collect, role):
            rows += unscored_rows(corpus, split, {v for c, v in done if c == corpus}, manifests, crop_status,
                                  lambda r: keep({"label": r.get("label"), "method": r.get("method")}))
        frames.append(pd.DataFrame([{**r, "group": group} for r in rows], columns=COLUMNS))
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    df = df.sort_values(["group", "corpus", "video_id"], kind="stable").reset_index(drop=True)
    df = with_zero_shot(df, av_scores)
    metrics = {"detector": {"trained": True, "init": meta.get("init"), "best_epoch": meta.get("best_epoch"),
                            "val_auc": meta.get("val_auc"), "val_threshold": threshold,
                            "exclude_methods": meta.get("exclude_methods", [])},
               "videos": {"total": int(len(df)), "scored": int((df["status"] == "scored").sum())},
               "groups": {g: group_metrics(df[df["group"] == g], threshold) for g in groups}}
    if "eval" in groups:
        metrics["cross_dataset"] = dataset_metrics(df, datasets, eval_datasets(collect), threshold)
    return df, metrics


def write_outputs(df: pd.DataFrame, metrics: dict, scores: Path, metrics_path: Path, plots: Path | None,
                  groups: tuple[str, ...] = tuple(GROUPS)) -> None:
    """scores.parquet, the metrics JSON and one ROC file per group and Table 3 column (an empty list when
    a curve is undefined: nothing scored, or one class only)."""
    scores.parent.mkdir(parents=True, exist_ok=True)
    df.astype({"n_clips": "int64", "n_segments": "int64", "score": "float64", "probability": "float64",
               **({"av_mismatch": "float64", "energy_correlation": "float64"} if "av_mismatch" in df else {})}) \
        .to_parquet(scores, index=False)
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps(metrics, indent=1, sort_keys=True))
    if plots is not None:
        curves = {g: df[df["group"] == g] for g in groups}
        for name, ds in (metrics.get("cross_dataset") or {}).items():
            curves[f"dataset_{name}"] = df[df["corpus"].isin(ds["corpora"]) & (df["split"] == "test")]
        write_rocs(df, curves, plots)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--detector", default="artifacts/finetune/detector.pt")
    p.add_argument("--collect", default="data/collect", help="the collect stage's folder")
    p.add_argument("--manifests", default="data_manifests")
    p.add_argument("--crop-status", default="data/crop", help="folder of the crop stage's CORPUS/status.parquet")
    p.add_argument("--scores", default="artifacts/evaluate/scores.parquet")
    p.add_argument("--metrics", default="metrics/evaluate.json")
    p.add_argument("--plots", default="plots/evaluate", help="ROC curves folder ('' for none)")
    p.add_argument("--av-mismatch", default="", help="the av_mismatch stage's scores.parquet ('' for none)")
    p.add_argument("--method", action="append", default=None,
                   help="score only the reals and the fakes of this method, finetune test split only (LOMO)")
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args(argv)
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    ev = section(load_yaml(a.params), "evaluate", EvaluateParams)
    info = init_from_env()
    try:
        groups = ("finetune_test",) if a.method else tuple(GROUPS)
        df, metrics = evaluate(a.detector, Path(a.collect), Path(a.manifests), Path(a.crop_status),
                               ev.batch_size, ev.datasets, tuple(a.method or ()),
                               groups, info, Path(a.av_mismatch) if a.av_mismatch else None)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    if info.is_main:
        write_outputs(df, metrics, Path(a.scores), Path(a.metrics), Path(a.plots) if a.plots else None, groups)
        v = metrics.get("videos", {"scored": 0, "total": 0})
        print(f"evaluate: {v['scored']} of {v['total']} videos scored -> {a.scores}, {a.metrics}", file=sys.stderr)
    cleanup()


if __name__ == "__main__":
    main()
