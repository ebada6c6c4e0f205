"""Small work, or work for one worker, runs in the stage process (cluster.inprocess_below): the same bytes
as on a LocalCluster, no cluster started, and a video that kills the stage process gets the cluster's crash
guard on the next run."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

import pytest
from conftest import REPO, copy_clip, make_video

from preprocess import paths
from pipeline.cluster import ClusterError, ClusterSettings, SlurmSettings, StageCluster
from pipeline.manifest import video_id_for
from pipeline.registry import add_corpus
from pipeline import stages
from preprocess.crop.pack import shard_dir
from preprocess.records import read_record

STAGES = ("resample", "track", "align", "crop")
# `python -m pipeline stage ...` with the resample stage's work dying on the video id in argv[1], as a decoder
# segfault would: in the stage process, and on the cluster's workers (a function of __main__ ships by value).
POISONED_CLI = """
import os, sys
from pipeline.cli import main
from preprocess.resample import stage

work = stage.work


def poisoned(task):
    if task.video_id == sys.argv[1]:
        os._exit(13)
    return work(task)


stage.work = poisoned
sys.exit(main(sys.argv[2:]))
"""

# `python -m pipeline stage ...` (it ends with os._exit), exit status 3 if pandas got imported: the stage
# commands read and write their tables with pyarrow alone (pandas' import is 0.25 s of each of the four per
# corpus), and pyarrow, which would import it on its own, is told there is none
WITHOUT_PANDAS_CLI = """
import os, runpy, sys

exit_now = os._exit
os._exit = lambda code: exit_now(3 if "pandas" in sys.modules else code)
sys.argv = ["pipeline", *sys.argv[1:]]
runpy.run_module("pipeline", run_name="__main__")
"""


def test_the_stage_commands_run_without_pandas(project, clips):
    copy_clip(clips.grid[0], project / "raw")
    add_corpus("g", "raw", pattern="*.mpg", role="pretrain", label="real")
    env = {**os.environ, "AVLIPS_ROOT": str(project), "PYTHONPATH": str(REPO)}
    for stage in STAGES:
        done = subprocess.run([sys.executable, "-c", WITHOUT_PANDAS_CLI, "stage", stage, "g"], cwd=project, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        record = read_record(stage, "g", video_id_for(clips.grid[0].name))
        assert record.status == "ok", (stage, record.reason)
    assert list(shard_dir("g").glob("*.tar"))


def test_who_runs_the_work():
    local = StageCluster(workers=2, settings=ClusterSettings(inprocess_below=4))  # two workers: by the count
    assert local.in_process(3) and not local.in_process(4)
    assert not local.in_process(1, crashed_before=True)  # a run that died mid-video: the crash guard
    assert not StageCluster(settings=ClusterSettings(inprocess_below=0)).in_process(1)
    one_worker = StageCluster(workers=1, settings=ClusterSettings(inprocess_below=4))
    assert one_worker.in_process(1000)  # one worker process is no faster than this one
    assert not one_worker.in_process(1000, crashed_before=True)
    assert not StageCluster(workers=2, settings=ClusterSettings(inprocess_below=4)).in_process(1000)
    assert not StageCluster(workers=1, settings=ClusterSettings(inprocess_below=0)).in_process(1)
    # the user chose where the work runs: a scheduler address or SLURM always gets the cluster
    assert not StageCluster("tcp://127.0.0.1:1", settings=ClusterSettings()).in_process(1)
    assert not StageCluster(settings=ClusterSettings(scheduler="tcp://127.0.0.1:1")).in_process(1)
    assert not StageCluster(settings=ClusterSettings(kind="slurm", slurm=SlurmSettings())).in_process(1)
    with StageCluster(settings=ClusterSettings()) as cluster:
        assert cluster.client_for(2) is None and cluster.client is None  # nothing started
    with socket.socket() as s:  # a port nothing listens on: a chosen scheduler is connected first, and fails
        s.bind(("127.0.0.1", 0))
        nowhere = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(ClusterError, match="cannot reach the dask scheduler"):
        with StageCluster(nowhere, settings=ClusterSettings(connect_timeout=1)):
            pass


def tree_bytes(folder) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow  # a LocalCluster of worker processes, four stages
def test_in_process_and_cluster_write_the_same_bytes(project, clips):
    """resample -> track -> align -> crop on two real GRID clips, once on a LocalCluster of worker processes,
    once in this process: every output and status file identical, and no cluster started for the second."""
    for clip in clips.grid[:2]:
        copy_clip(clip, project / "raw")
    add_corpus("g", "raw", pattern="*.mpg", role="pretrain", label="real")

    with StageCluster(workers=1, settings=ClusterSettings(inprocess_below=0)) as cluster:
        for stage in STAGES:
            records = stages.run(stage, "g", cluster)
            assert [r.status for r in records] == ["ok", "ok"], [(r.video_id, r.reason) for r in records]
        assert cluster.client is not None  # the stages did run on it
    on_cluster = tree_bytes(project / "data")
    shutil.rmtree(project / "data")

    with StageCluster(settings=ClusterSettings(inprocess_below=4)) as cluster:
        for stage in STAGES:
            stages.run(stage, "g", cluster)
        assert cluster.client is None
    in_process = tree_bytes(project / "data")
    assert any(name.startswith("shards/") for name in in_process) and any("status" in n for n in in_process)
    assert sorted(in_process) == sorted(on_cluster)
    assert [n for n in in_process if in_process[n] != on_cluster[n]] == []


@pytest.mark.slow  # stage processes, one killed, then a cluster
def test_a_video_that_kills_the_stage_process_gets_the_crash_guard_next_run(project):
    make_video(project / "raw" / "good.mp4")
    make_video(project / "raw" / "poison.mp4")
    add_corpus("c", "raw", pattern="*.mp4", role="pretrain", label="real")
    poison = video_id_for("poison.mp4")
    env = {**os.environ, "AVLIPS_ROOT": str(project), "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-c", POISONED_CLI, poison, "stage", "resample", "c", "--workers", "1"]

    first = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 13 and "in this process" in first.stderr  # died with the video, as a segfault would
    second = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "dask workers" in second.stderr  # the cluster this time
    assert read_record("resample", "c", video_id_for("good.mp4")).status == "ok"
    crashed = read_record("resample", "c", poison)
    assert crashed.status == "failed" and "crashed its worker" in crashed.reason
    assert not (paths.stage_dir("resample", "c") / ".starts").exists()

    third = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert third.returncode == 0 and "(2 already done, 0 processed now)" in third.stderr  # no cluster, nothing redone
    assert "dask workers" not in third.stderr


@pytest.fixture(autouse=True)
def _no_outside_cluster(monkeypatch):
    for name in ("DASK_SCHEDULER_ADDRESS", "AVLIPS_CLUSTER"):
        monkeypatch.delenv(name, raising=False)
