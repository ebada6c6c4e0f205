"""The cluster settings (params.yaml `cluster:`), the SLURM recipe's job script, and status tables that do not
depend on where a record came from. No cluster processes here: see test_cluster.py for those."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from pipeline.cluster import ClusterError, ClusterSettings, SlurmSettings, cluster_settings, dask_client, slurm_cluster
from preprocess.records import StatusRecord, records_to_table

REPO = Path(__file__).resolve().parents[1]


def test_settings_default_when_absent_and_plain_errors(monkeypatch):
    monkeypatch.delenv("AVLIPS_CLUSTER", raising=False)
    assert cluster_settings({}) == ClusterSettings()
    assert cluster_settings({"cluster": {"connect_timeout": 3, "slurm": {"cores": 8, "prologue": ["x"]}}}) == \
        ClusterSettings(connect_timeout=3, slurm=SlurmSettings(cores=8, prologue=("x",)))
    with pytest.raises(ValueError, match="cluster.slurm: unknown key.*walltme"):
        cluster_settings({"cluster": {"slurm": {"walltme": "1:00:00"}}})
    monkeypatch.setenv("AVLIPS_CLUSTER", "slurm")
    assert cluster_settings({"cluster": {"kind": "local"}}).kind == "slurm"
    monkeypatch.setenv("AVLIPS_CLUSTER", "pbs")
    with pytest.raises(ValueError, match="'pbs'.*is not one of local, slurm"):
        cluster_settings({})


def test_cluster_section_is_no_stage_param():
    """Runtime settings must not rerun stages: dvc.yaml lists `cluster` for no stage, and the shipped
    section is what the code reads."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    listed = [p for s in stages.values() for p in (s.get("do", s).get("params") or [])]
    assert listed and not [p for p in listed if str(p).split(".")[0] == "cluster"]
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert cluster_settings(params).slurm == SlurmSettings()  # the file documents the defaults


def test_slurm_job_script():
    """What would be submitted: 8 single-threaded workers per job, each limited to its share of the memory,
    the walltime, partition, extra directives and the prologue."""
    slurm = SlurmSettings(cores=8, memory="32GiB", walltime="02:30:00", queue="gpu", account="lab",
                          python="/shared/avlips/.venv/bin/python", job_extra_directives=("--gres=gpu:1",),
                          prologue=("module load ffmpeg", "cd /shared/avlips"))
    local = {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}  # the scheduler it would run here
    with slurm_cluster(slurm, submit=False, scheduler_options=local) as cluster:
        script = cluster.job_script()
    for line in ("#SBATCH -p gpu", "#SBATCH -A lab", "#SBATCH --cpus-per-task=8", "#SBATCH --mem=32G",
                 "#SBATCH -t 02:30:00", "#SBATCH --gres=gpu:1", "module load ffmpeg", "cd /shared/avlips"):
        assert line in script.splitlines()
    command = script.splitlines()[-1]
    assert command.startswith("/shared/avlips/.venv/bin/python -m distributed.cli.dask_worker tcp://127.0.0.1:")
    assert re.search(r"--nthreads 1 .*--memory-limit 4\.00GiB --nworkers 8 --nanny", command)


@pytest.mark.skipif(shutil.which("sbatch") is not None, reason="SLURM is installed here")
def test_slurm_without_sbatch_is_a_plain_error():
    with pytest.raises(ClusterError, match="cluster.kind is slurm but `sbatch` is not on PATH"):
        with dask_client(settings=ClusterSettings(kind="slurm")):
            pass


def test_status_table_does_not_depend_on_where_records_came_from():
    """A fresh record (a tuple, details in work order) and the same record read back from its JSON (a
    resumed run) give the same table, and detail columns are sorted whichever record has them."""
    fresh = [StatusRecord("c", "v2", "s", "ok", "", "f", 1.0, {"z": 3, "a": (1, 2), "m": 0.5}),
             StatusRecord("c", "v1", "s", "failed", "bad", "f", 2.0, {"reason_code": 7})]
    resumed = [StatusRecord.from_json(r.to_json()) for r in fresh]
    table = records_to_table(fresh)
    assert table.equals(records_to_table(resumed), check_metadata=True)  # values and types
    assert table.column_names == ["corpus", "video_id", "stage", "status", "reason", "fingerprint",
                                   "detail.a", "detail.m", "detail.reason_code", "detail.z"]
    assert records_to_table(fresh[::-1]).column_names == table.column_names
    assert b'"seconds"' not in fresh[0].to_json()  # timings vary run to run: never inside a DVC-hashed output


def test_project_root_is_per_thread(monkeypatch, tmp_path):
    """Threads of one shared worker may run tasks of two projects at once: each sees its own root."""
    import threading

    from preprocess import paths

    monkeypatch.setenv("AVLIPS_ROOT", str(tmp_path / "env"))
    seen = {}

    def task(name):
        with paths.thread_root(str(tmp_path / name)):
            barrier.wait()  # both inside their own root at the same time
            seen[name] = paths.project_root()

    barrier = threading.Barrier(2)
    threads = [threading.Thread(target=task, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"a": tmp_path / "a", "b": tmp_path / "b"}
    assert paths.project_root() == tmp_path / "env"
