"""Preprocessing on a real shared dask cluster: a `dask scheduler` and `dask worker` processes started by
hand (as a lab would), from another folder, on 127.0.0.1 only, always torn down.

Two projects at once on one scheduler, a video that kills its worker, a worker killed mid-stage, workers on
other code, a scheduler without workers, an unreachable one, and status tables that do not churn.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import make_video

from preprocess import paths
from pipeline.cluster import ClusterError, ClusterSettings, cluster_settings, dask_client
from pipeline.manifest import video_id_for
from pipeline.registry import add_corpus
from pipeline import stages
from preprocess.resample import stage as resample

REPO = Path(__file__).resolve().parents[1]
POISON = "poison.mp4"  # the video whose work kills its worker (poisoned_work)
CHECKED = ClusterSettings(connect_timeout=10, worker_timeout=60)

pytestmark = pytest.mark.slow  # real dask schedulers and workers, started by hand


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_env(code: Path = REPO, **extra) -> dict:
    """The environment of a hand-started worker: the project code on its path, no project root (the tasks
    carry theirs)."""
    env = {k: v for k, v in os.environ.items() if k not in ("AVLIPS_ROOT", "DASK_SCHEDULER_ADDRESS")}
    return {**env, "PYTHONPATH": str(code), **extra}


class Processes:
    """Subprocesses in their own sessions, logging to files; stop() ends each group by its id."""

    def __init__(self, folder: Path):
        self.folder, self.procs = folder, []

    def start(self, name: str, args: list[str], env: dict) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "w")
        proc = subprocess.Popen([sys.executable, "-m", *args], cwd=self.folder, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((proc, log))
        return proc

    def scheduler(self) -> str:
        port = free_port()
        self.start(f"scheduler-{port}", ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port",
                                         str(port), "--dashboard-address", "127.0.0.1:0"], worker_env())
        return f"tcp://127.0.0.1:{port}"

    def worker(self, address: str, name: str, env: dict) -> subprocess.Popen:
        return self.start(name, ["distributed.cli.dask_worker", address, "--name", name, "--nthreads", "1",
                                 "--host", "127.0.0.1", "--no-dashboard", "--death-timeout", "60"], env)

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text()

    def stop(self) -> None:
        for proc, _ in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc, log in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=20)
            log.close()


@pytest.fixture(scope="module")
def procs(tmp_path_factory):
    running = Processes(tmp_path_factory.mktemp("dask-processes"))  # workers start away from any project
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def shared(procs):
    """A scheduler (default settings: allowed-failures 3) with two single-threaded workers."""
    address = procs.scheduler()
    for name in ("w1", "w2"):
        procs.worker(address, name, worker_env())
    with dask_client(address, settings=CHECKED) as client:
        client.wait_for_workers(2, timeout=60)
    return address


def write_params(root: Path, cluster: str = "") -> None:
    params = (REPO / "params.yaml").read_text()
    head, _, _ = params.partition("corpora:")
    rest = params[params.index("\nresample:"):params.index("\ncluster:") if "\ncluster:" in params else None]
    (root / "params.yaml").write_text(head + "corpora: {}\n" + rest + cluster)


def synthetic_corpus(root: Path, seconds: float, names=("a.mp4", "b.mp4", "c.mp4")) -> None:
    (root / "data_manifests").mkdir(parents=True, exist_ok=True)
    write_params(root)
    for i, name in enumerate(names):
        make_video(root / "raw" / name, seconds=seconds, size=f"{160 + 16 * i}x120")
    with root_env(root):
        add_corpus("c", "raw", pattern="*.mp4")


@contextlib.contextmanager
def root_env(root: Path):
    old = os.environ.get("AVLIPS_ROOT")
    os.environ["AVLIPS_ROOT"] = str(root)
    try:
        yield root
    finally:
        os.environ.pop("AVLIPS_ROOT") if old is None else os.environ.__setitem__("AVLIPS_ROOT", old)


def stage_cli(root: Path, address: str, stage: str = "resample", corpus: str = "c") -> subprocess.Popen:
    """`python -m pipeline stage ...` in `root` with DASK_SCHEDULER_ADDRESS set: the hand-started recipe."""
    env = {**os.environ, "DASK_SCHEDULER_ADDRESS": address, "PYTHONPATH": str(REPO)}
    env.pop("AVLIPS_ROOT", None)  # dvc runs stages in the project folder
    return subprocess.Popen([sys.executable, "-m", "pipeline", "stage", stage, corpus], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_projects_at_once_on_one_scheduler(shared, tmp_path):
    """Same corpus name, same file names, so the same video ids: only the task keys keep them apart."""
    roots = {1.0: tmp_path / "one", 2.0: tmp_path / "two"}
    for seconds, root in roots.items():
        synthetic_corpus(root, seconds)
    runs = [stage_cli(root, shared) for root in roots.values()]
    outs = [run.communicate(timeout=300) for run in runs]
    for run, (_, err) in zip(runs, outs):
        assert run.returncode == 0, err
        assert "dashboard http" in err  # progress shows where to watch it
    for seconds, root in roots.items():
        table = pd.read_parquet(root / "data" / "resample" / "c" / "status.parquet")
        assert list(table.status) == ["ok"] * 3
        assert set(table["detail.n_frames"]) == {int(25 * seconds)}  # its own videos, not the other project's
        for video_id in table.video_id:
            with root_env(root):
                assert all(p.exists() for p in resample.output_paths("c", video_id))
        assert not (root / "data" / "resample" / "c" / ".starts").exists()


def poisoned_work(video_id: str):
    """The resample stage's work, except that it kills its worker process on `video_id`, as a decoder segfault
    would. A closure: cloudpickle ships it by value to workers that cannot import this test module."""
    work = resample.work

    def poisoned(task):
        if task.video_id == video_id:
            os._exit(13)
        return work(task)

    return poisoned


def test_a_video_that_kills_its_worker_is_started_twice_then_a_row(shared, procs, tmp_path, monkeypatch):
    root = tmp_path / "p"
    synthetic_corpus(root, 1.0, names=("a.mp4", "b.mp4", POISON))
    before = procs.log("w1") + procs.log("w2")
    monkeypatch.setattr(resample, "work", poisoned_work(video_id_for(POISON)))  # what stages.run submits
    with root_env(root), dask_client(shared, settings=CHECKED) as client:
        records = {r.video_id: r for r in stages.run("resample", "c", client)}
        client.wait_for_workers(2, timeout=60)  # the nannies restart what the poison killed
    poisoned = records.pop(video_id_for(POISON))
    assert poisoned.status == "failed" and poisoned.reason.startswith("crashed its worker:")
    assert [r.status for r in records.values()] == ["ok", "ok"]  # the run went on
    # The scheduler would allow 3 more tries after the first crash (its default): the runner's guard stops at 2.
    deaths = (procs.log("w1") + procs.log("w2")).count("exited with status 13") - before.count("exited with status 13")
    assert deaths == 2


def test_a_worker_killed_mid_stage_still_gives_identical_shards(shared, procs, base_project, packed_project, tmp_path):
    """align on the shared workers, one of them killed with SIGKILL while it works; then crop on them: the
    shards are byte-identical to those of the test project built on an in-process cluster."""
    from pipeline_project import copy_project, project_env

    from pipeline import stages
    from preprocess.align import stage as align

    reference = packed_project
    root = copy_project(base_project, tmp_path / "project")
    shutil.rmtree(root / "data" / "align" / "gridt", ignore_errors=True)  # aligned_project aligns in place
    with project_env(root), dask_client(shared, settings=CHECKED) as client:
        pids = client.run(os.getpid)
        killed, done = [], threading.Event()

        def kill_a_worker():  # as soon as one video is done: each worker has a video running or queued
            status = paths.status_dir(align.STAGE, "gridt")
            while not done.is_set() and not killed:
                if status.exists() and any(status.iterdir()):
                    killed.append(len(list(status.iterdir())))
                    os.kill(min(pids.values()), signal.SIGKILL)
                time.sleep(0.02)

        killer = threading.Thread(target=kill_a_worker)
        killer.start()
        try:
            records = stages.run("align", "gridt", client)
        finally:
            done.set()
            killer.join()
        client.wait_for_workers(2, timeout=60)
        crop_records = stages.run("crop", "gridt", client)  # rendered on the shared worker processes
    assert killed and killed[0] < len(records), "the worker was not killed mid-stage"
    assert "was killed by signal 9" in procs.log("w1") + procs.log("w2")
    assert [r.status for r in records] == ["ok"] * 6 and [r.status for r in crop_records] == ["ok"] * 6
    ours = sorted((root / "data" / "shards" / "gridt").rglob("*.tar"))
    theirs = sorted((reference / "data" / "shards" / "gridt").rglob("*.tar"))
    assert [p.name for p in ours] == [p.name for p in theirs] and ours
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(ours, theirs))


def test_status_table_is_identical_fresh_and_resumed(shared, tmp_path):
    root = tmp_path / "p"
    synthetic_corpus(root, 1.0)
    (root / "raw" / "broken.mp4").write_text("not a video\n")  # a failed row, with other detail columns
    table = root / "data" / "resample" / "c" / "status.parquet"
    with root_env(root), dask_client(shared, settings=CHECKED) as client:
        add_corpus("c", "raw", pattern="*.mp4")
        stages.run("resample", "c", client)
        fresh = table.read_bytes()
        ids = sorted(pd.read_parquet(table).video_id)
        for video_id in ids[1:3]:  # two videos redone, the others reused
            (paths.status_dir("resample", "c") / f"{video_id}.json").unlink()
        stages.run("resample", "c", client)
        assert table.read_bytes() == fresh


def test_other_code_on_a_worker_is_refused_and_no_workers_is_said(procs, tmp_path):
    address = procs.scheduler()
    with pytest.raises(ClusterError, match=r"has no workers after 2 s \(cluster.worker_timeout\)"):
        with dask_client(address, settings=ClusterSettings(worker_timeout=2)):
            pass
    other = tmp_path / "other-checkout"
    for package in ("pipeline", "preprocess", "models", "train"):
        shutil.copytree(REPO / package, other / package, ignore=shutil.ignore_patterns("__pycache__"))
    with open(other / "pipeline" / "runner.py", "a") as f:
        f.write("# a local edit\n")
    procs.worker(address, "stale", worker_env(code=other))
    with pytest.raises(ClusterError, match=f"1 of 1 dask workers run other code.*from {other}"):
        with dask_client(address, settings=ClusterSettings(worker_timeout=60)):
            pass


def test_an_unreachable_scheduler_is_one_line_within_5_s(tmp_path):
    """The shipped cluster settings (params.yaml's own section): refused in under 5 s from the command's start,
    one line that says which setting waits, exit code 2."""
    root = tmp_path / "p"
    (root / "data_manifests").mkdir(parents=True)
    shipped = (REPO / "params.yaml").read_text()
    write_params(root, shipped[shipped.index("\ncluster:"):])
    timeout = cluster_settings(yaml.safe_load(shipped)).connect_timeout
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    start = time.monotonic()
    run = stage_cli(root, address)
    _, err = run.communicate(timeout=120)
    seconds = time.monotonic() - start
    assert run.returncode == 2
    assert err.strip().splitlines() == [f"error: cannot reach the dask scheduler at {address} within {timeout:g} s: "
                                        f"Timed out trying to connect to {address} after {timeout:g} s. Is it "
                                        f"running, and is the address right? If it is only slow to answer, raise "
                                        f"cluster.connect_timeout in params.yaml (seconds)"]
    assert seconds < 5, f"{seconds:.1f} s to refuse an unreachable scheduler"


def test_a_task_from_a_client_on_other_code_stops_the_run(shared, tmp_path, monkeypatch):
    """A worker that joined after the check at connect time still refuses work from other code: here the
    client, past that check, claims a version no worker has."""
    from pipeline import runner
    from pipeline.runner import VideoTask, run_stage

    root = tmp_path / "p"
    root.mkdir()
    with root_env(root), dask_client(shared, settings=CHECKED) as client:
        monkeypatch.setattr(runner, "code_version", lambda: ("0123456789ab", "another checkout"))
        tasks = [VideoTask("resample", "c", "v0", "fp")]
        refused = r"runs other code \(version \w+ from .*\) than the client \(0123456789ab\)"
        with pytest.raises(ClusterError, match=refused):
            run_stage("resample", "c", tasks, resample.work, client)
