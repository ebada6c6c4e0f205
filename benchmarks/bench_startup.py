"""Where the seconds of one short clip go: `dvc repro crop@clip` (resample -> track -> align -> crop) on a
one-clip project, per stage and per phase, with the stages on a LocalCluster and in the stage process.

    python benchmarks/bench_startup.py [--clip PATH] [--workers 1] [--code DIR] [--modes cluster,inprocess]

A temporary project gets the repository's dvc.yaml and params.yaml, the code of --code (default: this
checkout; e.g. a `git archive` of an older commit, to compare) and one real 3 s GRID clip as its only corpus.
Per mode (`cluster`: cluster.inprocess_below 0, every stage starts its LocalCluster; `inprocess`: the
shipped setting) it prints:

1. `dvc repro crop@clip` from scratch, --repeat times: its wall time, each stage command's wall time (a
   `python` shim on PATH logs them) and DVC's own share (the rest); then the same four commands without DVC;
   the minimum and median of the runs (on a shared machine the minimum is the least disturbed).
2. The stages again, from scratch, each one `python -m pipeline stage` run through a probe that times its
   phases from inside: interpreter start and exit, imports, params and manifest (stage start to work
   dispatch), cluster start and shutdown, model loads (in process only: on a cluster they happen inside the
   workers' per-video seconds), the per-video work (the status records' seconds), status writes, and the rest
   of the dispatch (on a cluster: shipping tasks, worker-side imports).

Nothing is asserted; the machine's load changes the figures (run it twice).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TESTDATA = REPO.parent / "shared" / "testdata"
STAGES = ("resample", "track", "align", "crop")
CORPUS = "clip"
CODE = ("pipeline", "preprocess", "models", "train")
# cluster.inprocess_below per mode; None: the params.yaml of --code as it is (`shipped`: for code that
# predates the setting)
MODES = {"cluster": 0, "inprocess": None, "shipped": None}
PHASES = ("interp", "imports", "prepare", "cl_start", "cl_stop", "models", "work", "status", "dispatch", "after")


# ---- the probe: runs inside one `python -m pipeline stage` process ----

def probe(stage: str, corpus: str) -> None:
    """Time the phases of `python -m pipeline stage STAGE CORPUS`, printing them as one JSON line."""
    t0 = time.perf_counter()
    wall0 = time.time()
    times = dict.fromkeys(PHASES, 0.0)
    times["interp"] = wall0 - float(os.environ["BENCH_LAUNCH"])  # exec to the first line of this script
    import importlib

    import pipeline.cli as cli
    import pipeline.cluster as cluster
    import pipeline.runner as runner

    import pipeline.stages as driver

    mod = importlib.import_module(f"preprocess.{stage}.stage")
    times["imports"] = time.perf_counter() - t0
    marks = {}

    def timed(module, name, phase, before=None):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            if before:
                before(start)
            try:
                return original(*args, **kwargs)
            finally:
                times[phase] += time.perf_counter() - start
        setattr(module, name, wrapper)

    original_client = cluster.dask_client

    class TimedClient:  # the context manager dask_client returns, with its start and shutdown timed apart
        def __init__(self, *args, **kwargs):
            self.cm = original_client(*args, **kwargs)

        def __enter__(self):
            start = time.perf_counter()
            try:
                return self.cm.__enter__()
            finally:
                times["cl_start"] += time.perf_counter() - start

        def __exit__(self, *exc):
            start = time.perf_counter()
            try:
                return self.cm.__exit__(*exc)
            finally:
                times["cl_stop"] += time.perf_counter() - start

    cluster.dask_client = TimedClient
    seconds = []

    def run_stage(*args, **kwargs):  # the stage's own preparation ends where its work is dispatched
        marks["dispatch"] = time.perf_counter()
        started = times["cl_start"]
        start = time.perf_counter()
        records = original_run_stage(*args, **kwargs)
        marks["run_stage"] = time.perf_counter() - start
        marks["cl_start"] = times["cl_start"] - started  # a cluster started on demand, inside the runner
        seconds.extend(r.seconds for r in records)
        return records

    original_run_stage = driver.run_stage
    driver.run_stage = run_stage
    for module in {runner, mod}:
        if hasattr(module, "write_status_table"):
            timed(module, "write_status_table", "status")
    timed(runner, "write_record", "status")  # in this process only (on a cluster the workers write them)
    for name in ("_load_models", "landmarker_for"):
        if hasattr(mod, name):
            timed(mod, name, "models")
    original_stage_run = driver.run

    def stage_run(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original_stage_run(*args, **kwargs)
        finally:
            marks["stage_run"] = (start, time.perf_counter())
    driver.run = stage_run
    rc = cli.main(["stage", stage, corpus])
    end = time.perf_counter()
    start, stop = marks["stage_run"]
    dispatched = marks.get("dispatch", stop)
    times["prepare"] = dispatched - start
    if "run_stage" in marks:
        worked = sum(seconds)  # on a cluster: includes each worker's model load
        times["work"] = worked - times["models"]
        times["dispatch"] = marks["run_stage"] - worked - marks["cl_start"] - times["status"]
        times["after"] = stop - dispatched - marks["run_stage"]
    else:  # crop: no per-video dispatch, packing is its work
        times["prepare"] = 0.0
        times["work"] = stop - start - times["status"]
    times["cli"] = end - t0 - sum(times[p] for p in PHASES if p != "interp")  # parsing, and the rest
    times["end"] = time.time()
    print("BENCH " + json.dumps({"rc": rc, **times}), flush=True)


# ---- the driver ----

def make_project(root: Path, code: Path, clips: list[Path], inprocess_below: int | None,
                 corpus: str = CORPUS) -> dict:
    """A scratch project with the code of `code`, its dvc.yaml and params.yaml, and `clips` (symlinked) as its
    only corpus; returns the environment to run it in (a timing `python` shim first on PATH)."""
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(code / name if (code / name).exists() else REPO / name, root / name)
    for package in CODE:
        if (code / package).exists():
            shutil.copytree(code / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((code / "params.yaml" if (code / "params.yaml").exists() else REPO / "params.yaml")
                            .read_text())
    params["corpora"] = {}
    if inprocess_below is not None:
        params.setdefault("cluster", {})["inprocess_below"] = inprocess_below
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / "raw").mkdir()
    for clip in clips:
        (root / "raw" / clip.name).symlink_to(clip)
    (root / "data_manifests").mkdir()
    bin_dir = root / ".bench"
    bin_dir.mkdir()
    shim = bin_dir / "python"  # logs each stage command's wall time, then is the real interpreter
    shim.write_text(f'#!/bin/sh\ns=$(date +%s.%N)\n"{sys.executable}" "$@"\nrc=$?\n'
                    f'echo "$s $(date +%s.%N) $*" >> "{bin_dir}/commands.log"\nexit $rc\n')
    shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(root), "AVLIPS_ROOT": str(root)}
    pattern = clips[0].name if len(clips) == 1 else "*"
    run([sys.executable, "-m", "pipeline", "corpus", "add", corpus, "raw", "--pattern", pattern,
         "--role", "pretrain", "--label", "real"], root, env)
    run(["dvc", "init", "--no-scm", "-q"], root, env)
    # analytics off, as in the repository's .dvc/config (else each `dvc repro` starts a reporting process
    # that competes for the benchmark's core)
    run(["dvc", "config", "core.analytics", "false"], root, env)
    return env


def run(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def reset(root: Path) -> None:
    for name in ("data", "logs", "dvc.lock"):
        path = root / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    (root / ".bench" / "commands.log").unlink(missing_ok=True)


def children_cpu() -> float:
    """CPU seconds (user + system) of every finished subprocess and its reaped descendants (dask workers
    included): a figure a shared machine's load disturbs far less than wall time."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def dvc_repro(root: Path, env: dict) -> tuple[float, dict, float]:
    reset(root)
    start, cpu = time.perf_counter(), children_cpu()
    out = run(["dvc", "repro", f"crop@{CORPUS}"], root, env)
    total = time.perf_counter() - start
    cpu = children_cpu() - cpu
    for stage in STAGES:
        assert f"{stage}@{CORPUS}: 1 ok" in out.stderr + out.stdout, out.stderr[-2000:]
    commands = {}
    for line in (root / ".bench" / "commands.log").read_text().splitlines():
        begin, end, *cmd = line.split()
        commands[cmd[3]] = float(end) - float(begin)  # -m pipeline stage NAME CORPUS
    return total, commands, cpu


def plain_commands(root: Path, env: dict) -> dict:
    """Each stage's `python -m pipeline stage` from scratch, one after another, as dvc would run them."""
    reset(root)
    seconds = {}
    cpu = children_cpu()
    for stage in STAGES:
        start = time.perf_counter()
        run([sys.executable, "-m", "pipeline", "stage", stage, CORPUS], root, env)
        seconds[stage] = time.perf_counter() - start
    seconds["cpu"] = children_cpu() - cpu
    return seconds


def probe_stages(root: Path, env: dict) -> dict:
    reset(root)
    rows = {}
    for stage in STAGES:
        launch = time.time()
        out = run([sys.executable, str(Path(__file__).resolve()), "--probe", stage, CORPUS], root,
                  {**env, "BENCH_LAUNCH": repr(launch)})
        done = time.time()
        line = next(x for x in out.stdout.splitlines() if x.startswith("BENCH "))
        row = json.loads(line[6:])
        row["wall"] = done - launch
        row["interp"] += done - row.pop("end")  # start-up plus teardown at exit
        rows[stage] = row
    return rows


def print_table(title: str, rows: dict) -> None:
    print(f"\n{title}")
    print(f"{'stage':9} {'wall':>6} " + " ".join(f"{p:>8}" for p in PHASES) + f" {'cli':>6}")
    sums = {}
    for stage, row in rows.items():
        print(f"{stage:9} {row['wall']:6.2f} " + " ".join(f"{row[p]:8.2f}" for p in PHASES) + f" {row['cli']:6.2f}")
        for key in ("wall", *PHASES, "cli"):
            sums[key] = sums.get(key, 0.0) + row[key]
    print(f"{'total':9} {sums['wall']:6.2f} " + " ".join(f"{sums[p]:8.2f}" for p in PHASES) + f" {sums['cli']:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probe", nargs=2, metavar=("STAGE", "CORPUS"), help=argparse.SUPPRESS)
    parser.add_argument("--clip", type=Path, default=TESTDATA / "grid" / "bbaf2n.mpg", help="the one clip")
    parser.add_argument("--workers", type=int, default=1, help="AVLIPS_WORKERS (LocalCluster workers)")
    parser.add_argument("--code", type=Path, default=REPO, help="checkout whose pipeline/ and preprocess/ run")
    parser.add_argument("--modes", default="cluster,inprocess", help="comma-separated: " + ", ".join(MODES))
    parser.add_argument("--repeat", type=int, default=3, help="dvc repro runs per mode (the breakdown: one)")
    args = parser.parse_args()
    if args.probe:
        return probe(*args.probe)
    if not args.clip.exists():
        sys.exit(f"no clip at {args.clip}: this benchmark needs the real test clips in {TESTDATA}")
    print(f"clip {args.clip.name}; code from {args.code}; AVLIPS_WORKERS={args.workers}; {os.cpu_count()} cores")
    print("phases (s): interp = interpreter start + exit; imports = pipeline.cli + the stage module; prepare = "
          "params, manifest, fingerprints; cl_start/cl_stop = LocalCluster; models = model loads in this "
          "process; work = the records' seconds less models; status = status records and table; dispatch = "
          "the rest of the runner (on a cluster: task shipping, worker imports); after = the stage's own "
          "tables after its work; cli = argument parsing and the rest")
    for mode in args.modes.split(","):
        with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
            root = Path(tmp) / "project"
            root.mkdir()
            env = make_project(root, args.code.resolve(), [args.clip.resolve()], MODES[mode])
            env["AVLIPS_WORKERS"] = str(args.workers)
            totals, plains, cpus = [], [], []
            for i in range(args.repeat):
                total, commands, cpu = dvc_repro(root, env)
                stage_sum = sum(commands.values())
                totals.append(total)
                cpus.append(cpu)
                print(f"\n[{mode}] dvc repro crop@{CORPUS} (run {i + 1}): {total:.2f} s = stage commands "
                      f"{stage_sum:.2f} s (" + ", ".join(f"{s} {commands[s]:.2f}" for s in STAGES if s in commands)
                      + f") + DVC {total - stage_sum:.2f} s; CPU {cpu:.2f} s")
                plain = plain_commands(root, env)
                plain_cpu = plain.pop("cpu")
                plains.append(sum(plain.values()))
                print(f"[{mode}] the same commands without DVC: {sum(plain.values()):.2f} s ("
                      + ", ".join(f"{s} {t:.2f}" for s, t in plain.items()) + f"); CPU {plain_cpu:.2f} s")
            print(f"\n[{mode}] dvc repro over {len(totals)} runs: min {min(totals):.2f} s, median "
                  f"{statistics.median(totals):.2f} s; without DVC: min {min(plains):.2f} s, median "
                  f"{statistics.median(plains):.2f} s; dvc repro CPU: min {min(cpus):.2f} s, median "
                  f"{statistics.median(cpus):.2f} s")
            print_table(f"[{mode}] per-stage phases (s), each stage from scratch", probe_stages(root, env))


if __name__ == "__main__":
    main()
