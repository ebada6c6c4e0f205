"""demo: writes the generated demo corpora (raw videos, labels and split files) and their source manifests.

The demo corpora are registered in params.yaml like any other (`corpora:`), with raw_dir data/demo/NAME,
`labels: data/demo/NAME.labels.csv` and `split.file: data/demo/NAME.splits.csv`. Their manifests cannot be
made by `corpus add` ahead of time, because the videos only exist once this stage ran: so this stage scans
them itself, with the same code, and writes data_manifests/NAME.parquet. Files get fixed content and a fixed
mtime, so the manifests (git-tracked, DVC outputs without cache) come out byte-identical on every run and
resample@NAME, which depends on its manifest, follows this stage in the DAG.
"""
from __future__ import annotations

import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from preprocess import paths
from preprocess.fileio import write_bytes_atomic
from preprocess.paths import project_path
from preprocess.demo.plan import REAL, Clip, DemoParams, demo_params, plan, render_clip
from preprocess.demo.writer import FIXED_MTIME_NS, write_video

STAGE = "demo"
GROUP_BY = r"^(id\d+)/"
SHEET = Path("plots") / "demo" / "contact_sheet.png"


def demo_dir() -> Path:
    return paths.project_root() / "data" / STAGE


def expected_registration(name: str) -> dict:
    """Where the stage writes corpus NAME, as its params.yaml entry must say."""
    return {"raw_dir": f"data/demo/{name}", "labels": f"data/demo/{name}.labels.csv",
            "split.file": f"data/demo/{name}.splits.csv", "split.group_by": GROUP_BY}


def check_registration(name: str, params: dict) -> None:
    entry = (params.get("corpora") or {}).get(name)
    if entry is None:
        raise ValueError(f"demo corpus {name} is not registered in params.yaml corpora; register it as "
                         f"{expected_registration(name)}")
    split = entry.get("split") or {}
    have = {"raw_dir": entry.get("raw_dir"), "labels": entry.get("labels"), "split.file": split.get("file"),
            "split.group_by": split.get("group_by")}
    for key, want in expected_registration(name).items():
        if have[key] != want:
            raise ValueError(f"demo corpus {name}: params.yaml corpora.{name}.{key} is {have[key]!r}; the demo "
                             f"stage writes it as {want!r}, so set it to that")


def split_of_identity(role: str, identity: int, params: DemoParams) -> str:
    """Speakers, not clips, go to splits: the last `val_speakers` identities validate, in fine-tuning the
    `test_speakers` before them test (as long as one identity is left to train on); eval corpora are all test."""
    n, val, test = params.identities, params.val_speakers, params.test_speakers
    if role == "eval":
        return "test"
    if identity >= n - val and n > val:
        return "val"
    if role == "finetune" and identity >= n - val - test and n > val + test:
        return "test"
    return "train"


def _make_clip(args: tuple[DemoParams, Clip, str]) -> list[str]:
    params, clip, folder = args
    audio, videos, _ = render_clip(params, clip)
    for method, frames in videos.items():
        write_video(Path(folder) / clip.relpath(method), frames, params.fps, audio, params.sample_rate, params.crf)
    return list(videos)


def write_corpus(params: DemoParams, name: str, role: str, workers: int) -> int:
    """Render and write every clip of corpus `name`, its labels and split files. Returns videos written."""
    folder = demo_dir() / name
    shutil.rmtree(folder, ignore_errors=True)
    clips = plan(params, name)
    written = 0
    with ProcessPoolExecutor(workers) as pool:
        for done, methods in enumerate(pool.map(_make_clip, [(params, c, str(folder)) for c in clips]), 1):
            written += len(methods)
            print(f"demo {name}: {done}/{len(clips)} clips, {written} videos", file=sys.stderr, flush=True)
    labels = [(c.relpath(m), "real" if m == REAL else "fake", "" if m == REAL else m)
              for c in clips for m in (REAL, *c.methods)]
    _write_csv(demo_dir() / f"{name}.labels.csv", pd.DataFrame(labels, columns=["relpath", "label", "method"]))
    groups = sorted({c.group: split_of_identity(role, c.identity, params) for c in clips}.items())
    _write_csv(demo_dir() / f"{name}.splits.csv", pd.DataFrame(groups, columns=["group", "split"]))
    for path in folder.rglob("*"):  # folders too: nothing of the run's time ends up in what DVC hashes
        os.utime(path, ns=(FIXED_MTIME_NS, FIXED_MTIME_NS))
    return written


def _write_csv(path: Path, table: pd.DataFrame) -> None:
    write_bytes_atomic(path, table.to_csv(index=False, lineterminator="\n").encode())
    os.utime(path, ns=(FIXED_MTIME_NS, FIXED_MTIME_NS))


def write_sheet(params: DemoParams, name: str, out: Path) -> None:
    """The contact sheet of the corpus's first clip: real and every fake method."""
    from PIL import Image

    from preprocess.demo import animate
    from preprocess.demo.photos import identity_face
    from preprocess.demo.plan import clip_rng
    from preprocess.demo.sheet import contact_sheet

    clip = plan(params, name)[0]
    _, videos, openness = render_clip(params, clip)
    face = identity_face(clip.identity)
    framing = animate.make_framing(face, params.size, params.n_frames, params.fps, clip_rng(params, clip, 1))
    real = animate.render(face, openness, framing, params.size)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(contact_sheet(videos, real.mouth, real.mouth_width)).save(out)


def generate(params: dict, workers: int | None = None) -> list[str]:
    """Write every demo corpus's videos, labels and split files, and the contact sheet; returns the corpus
    names (their source manifests are the registry's job: the pipeline scans them next)."""
    demo = demo_params(params)
    if not demo.corpora:
        raise ValueError("params.yaml demo.corpora lists no corpus: nothing to generate")
    for name in demo.corpora:
        check_registration(name, params)
    workers = workers or int(os.environ.get("AVLIPS_WORKERS") or os.cpu_count() or 1)
    for name in demo.corpora:
        written = write_corpus(demo, name, params["corpora"][name].get("role", "pretrain"), workers)
        print(f"demo {name}: {written} videos in data/demo/{name}", file=sys.stderr)
    richest = max(demo.corpora, key=lambda n: len(demo.corpora[n].methods))
    write_sheet(demo, richest, project_path(str(SHEET)))
    print(f"demo: contact sheet of real vs fakes in {SHEET}", file=sys.stderr)
    return list(demo.corpora)
