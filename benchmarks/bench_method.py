"""Does the method work on the demo, and how much does it vary with the seed? Pretrained against scratch
(Tables 1-2) and the zero-shot audio-visual mismatch AUC per demo method, over several training seeds, with
the seconds of each training stage.

    python benchmarks/bench_method.py                 # seeds 0 1 2, after `dvc repro` made the demo shards
    python benchmarks/bench_method.py --seeds 0 1 --keep /tmp/bench_method

Each seed runs in its own copy of the project (tracked files, the preprocessing outputs and dvc.lock copied,
so only the training stages run) with `pretrain.seed` and `finetune.seed` set to the seed; every stage from
pretrain to report runs through `dvc repro STAGE --single-item`, timed one by one. Prints one table per
figure: each seed, then mean and standard deviation.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # test_main_job.copy_project: the project copy the tests run
BIN = Path(sys.executable).parent
COPIED = ("data", "data_manifests", "dvc.lock")  # what preprocessing made: reused, not rebuilt
STAGES = ("pretrain", "av_mismatch", "finetune", "scratch", "evaluate", "lomo@jitter", "report")


def copy_project(dst: Path) -> None:
    """The tests' project copy (tracked files in a fresh repository), plus the preprocessing outputs."""
    from test_main_job import copy_project as copy_tracked

    copy_tracked(dst)
    for rel in COPIED:
        src = ROOT / rel
        if src.is_dir():
            shutil.copytree(src, dst / rel, symlinks=True, dirs_exist_ok=True)
        elif src.is_file():
            shutil.copy2(src, dst / rel)


def set_seed(root: Path, seed: int) -> None:
    path = root / "params.yaml"
    text = path.read_text()
    params = yaml.safe_load(text)
    for section in ("pretrain", "finetune"):
        old = f"\n{section}:\n  seed: {params[section]['seed']}"
        assert old in text, f"params.yaml: {section}.seed must be the section's first key"
        text = text.replace(old, f"\n{section}:\n  seed: {seed}")
    path.write_text(text)


def run_seed(root: Path, seed: int) -> dict:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("AVLIPS_ROOT", None)
    seconds = {}
    for stage in STAGES:
        t0 = time.perf_counter()
        done = subprocess.run(["dvc", "repro", "--single-item", stage], cwd=root, env=env, capture_output=True,
                              text=True)
        if done.returncode:
            raise SystemExit(f"seed {seed}: dvc repro {stage} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        seconds[stage] = time.perf_counter() - t0
        print(f"seed {seed}: {stage} {seconds[stage]:.0f} s", file=sys.stderr, flush=True)
    metrics = root / "metrics"
    ev = json.loads((metrics / "evaluate.json").read_text())
    scratch = json.loads((metrics / "baselines" / "scratch.json").read_text())
    lomo = json.loads((metrics / "lomo" / "jitter.json").read_text())
    live = json.loads((root / "dvclive" / "pretrain" / "metrics.json").read_text())
    out = {"seconds": seconds,
           "pretrain final loss": live["train"]["loss"], "pretrain val top-1": live["val"]["a2v_top1"],
           "pretrain val chance": live["val"]["chance_top1"],
           "Table 1 AUC pretrained": ev["groups"]["finetune_test"]["overall"]["auc"],
           "Table 1 AUC scratch": scratch["groups"]["finetune_test"]["overall"]["auc"],
           "Table 2 AUC jitter (pretrained)": lomo["groups"]["finetune_test"]["overall"]["auc"]}
    for name, col in ev["cross_dataset"].items():
        out[f"Table 3 AUC {name} pretrained"] = col["auc"]
        out[f"Table 3 AUC {name} scratch"] = scratch["cross_dataset"][name]["auc"]
    for method, m in ev["groups"]["eval"]["by_method"].items():
        out[f"zero-shot AV mismatch AUC {method}"] = m["av_mismatch_auc"]
        out[f"energy baseline AUC {method}"] = m["energy_mismatch_auc"]
    return out


def fmt(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--keep", type=Path, help="run in this folder and keep it (default: a temporary one)")
    a = p.parse_args()
    if not (ROOT / "data" / "collect" / "pretrain.json").is_file():
        raise SystemExit("run `dvc repro collect` first: the benchmark reuses the demo's shards")
    base = a.keep or Path(tempfile.mkdtemp(prefix="bench_method_"))
    results = {}
    try:
        for seed in a.seeds:
            root = base / f"seed{seed}"
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            copy_project(root)
            set_seed(root, seed)
            results[seed] = run_seed(root, seed)
    finally:
        if a.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    names = [k for k in results[a.seeds[0]] if k != "seconds"]
    print("| figure | " + " | ".join(f"seed {s}" for s in a.seeds) + " | mean | sd |")
    print("|---|" + "---|" * (len(a.seeds) + 2))
    for name in names:
        xs = [results[s].get(name) for s in a.seeds]
        ok = [x for x in xs if x is not None]
        sd = statistics.stdev(ok) if len(ok) > 1 else None
        print(f"| {name} | " + " | ".join(fmt(x) for x in xs) + f" | {fmt(statistics.mean(ok) if ok else None)} | "
              f"{fmt(sd)} |")
    for stage in STAGES:
        xs = [results[s]["seconds"][stage] for s in a.seeds]
        print(f"| seconds {stage} | " + " | ".join(f"{x:.0f}" for x in xs) + f" | {statistics.mean(xs):.0f} | "
              f"{statistics.stdev(xs) if len(xs) > 1 else 0:.0f} |")


if __name__ == "__main__":
    main()
