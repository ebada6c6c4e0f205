"""The dask.distributed client every per-video stage runs on, and the checks that make a cluster trustworthy.

Where the work runs: an existing scheduler when an address is given (CLI --scheduler, $DASK_SCHEDULER_ADDRESS
or `cluster.scheduler`: workers started by hand, dask-kubernetes ...), a dask-jobqueue SLURMCluster when
`cluster.kind` (or $AVLIPS_CLUSTER) is `slurm`, otherwise an embedded LocalCluster of single-threaded
worker processes. A local stage with fewer than `cluster.inprocess_below` videos left to do, or with one
worker, starts no cluster at all: its stage process runs them itself, one after the other (StageCluster,
pipeline/runner.py), since starting workers and loading their models costs more than a few videos, and one
worker process runs no faster than the stage process. All of it is runtime settings: the `cluster:` section of params.yaml is listed by no
stage in dvc.yaml and enters no fingerprint, so it never changes results or DVC hashes.

On connecting: fail in one plain line when the scheduler cannot be reached (`connect_timeout`) or has no
workers (`worker_timeout`), and refuse workers that import other code than the client (codeversion.py).
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from dataclasses import dataclass, field, replace

from typing import TYPE_CHECKING

from pipeline.codeversion import code_version, version_probe
from pipeline.corpora import load_params
from preprocess.settings import section

if TYPE_CHECKING:  # distributed is imported where a cluster starts: a stage run in process never needs it
    from distributed import Client

KINDS = ("local", "slurm")


class ClusterError(RuntimeError):
    """The cluster cannot be used as configured: a plain one-line message for the user, no traceback."""


@dataclass(frozen=True)
class SlurmSettings:
    jobs: int = 1                 # SLURM jobs to submit
    cores: int = 4                # per job: one single-threaded worker process per core
    memory: str = "16GiB"         # per job; each worker may use memory / cores before its nanny restarts it
    walltime: str = "04:00:00"
    queue: str | None = None      # partition
    account: str | None = None
    python: str | None = None     # interpreter on the nodes; null: this one (a venv on a shared filesystem)
    interface: str | None = None  # network interface the nodes reach the scheduler on (e.g. ib0)
    job_extra_directives: tuple = ()  # more #SBATCH lines, e.g. --gres=gpu:1
    prologue: tuple = ()          # shell lines run before the workers start (module load ..., export ...)


@dataclass(frozen=True)
class ClusterSettings:
    kind: str = "local"            # local | slurm; a scheduler address overrides both
    scheduler: str | None = None   # address of a running scheduler (after --scheduler and $DASK_SCHEDULER_ADDRESS)
    connect_timeout: float = 3.0   # s: an unreachable scheduler is an error after this (and dask's reconnect window)
    worker_timeout: float = 120.0  # s: a scheduler with no worker is an error after this
    memory_limit: str = "auto"     # per local worker ("auto": the machine's memory / workers), e.g. 8GiB
    inprocess_below: int = 4       # local: fewer videos to do than this (or one worker): the stage process (0: never)
    slurm: SlurmSettings = field(default_factory=SlurmSettings)


def cluster_settings(params: dict | None = None) -> ClusterSettings:
    """The `cluster:` section of params.yaml (defaults when absent); $AVLIPS_CLUSTER overrides its kind."""
    settings = section(load_params() if params is None else params, "cluster", ClusterSettings)
    kind = os.environ.get("AVLIPS_CLUSTER") or settings.kind
    if kind not in KINDS:
        raise ValueError(f"cluster kind {kind!r} (params.yaml cluster.kind or $AVLIPS_CLUSTER) "
                         f"is not one of {', '.join(KINDS)}")
    return replace(settings, kind=kind)


def default_workers() -> int:
    return int(os.environ.get("AVLIPS_WORKERS", 0)) or (os.cpu_count() or 1)


def scheduler_address(scheduler: str | None, settings: ClusterSettings) -> str | None:
    return scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS") or settings.scheduler


class StageCluster:
    """The client of one stage run, started on first need: `client_for(n)` is None when the n videos to do
    run in this process (a local cluster, n < inprocess_below, and no earlier run of this stage died
    mid-video), else a checked client, started once and kept until close. A scheduler address or SLURM
    always gets the cluster, connected on entering, as before any work: the user chose where the work runs,
    and a wrong address fails first."""

    def __init__(self, scheduler: str | None = None, workers: int | None = None,
                 settings: ClusterSettings | None = None):
        self.scheduler, self.workers = scheduler, workers
        self.settings = settings or cluster_settings()
        self.client = None
        self._stack = contextlib.ExitStack()

    def local(self) -> bool:
        return self.settings.kind == "local" and scheduler_address(self.scheduler, self.settings) is None

    def in_process(self, videos: int, crashed_before: bool = False) -> bool:
        return (self.client is None and not crashed_before and self.local()
                and self.settings.inprocess_below > 0  # 0: never
                and (videos < self.settings.inprocess_below or self.one_worker()))

    def one_worker(self) -> bool:
        """A local cluster of one worker runs no faster than this process and costs its start."""
        return (self.workers or default_workers()) == 1

    def client_for(self, videos: int, crashed_before: bool = False) -> "Client | None":
        if self.in_process(videos, crashed_before):
            return None
        if self.client is None:
            self.client = self._stack.enter_context(dask_client(self.scheduler, self.workers, self.settings))
        return self.client

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> "StageCluster":
        if not self.local():
            self.client_for(0)
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None, settings: ClusterSettings | None = None):
    """A checked client: reachable scheduler, at least one worker, every worker on the client's code."""
    settings = settings or cluster_settings()
    address = scheduler_address(scheduler, settings)
    if address:
        with connect(address, settings) as client:
            yield client
    elif settings.kind == "slurm":
        with slurm_cluster(settings.slurm) as cluster, connect(cluster, settings) as client:
            yield client
    else:
        import dask
        from distributed import LocalCluster

        # A video that kills its worker (a decoder crash) would otherwise be rescheduled onto 3 more workers
        # and kill them too. This reaches only the embedded scheduler; on any other the runner's own guard
        # (at most two starts per video and run, pipeline/runner.py) holds whatever the scheduler's settings.
        dask.config.set({"distributed.scheduler.allowed-failures": 0})
        with LocalCluster(
            n_workers=workers or default_workers(),
            threads_per_worker=1,  # media libraries bring their own threads; one task per process
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",  # a free port, so parallel runs never clash
            memory_limit=settings.memory_limit,
            silence_logs=logging.ERROR,
        ) as cluster, connect(cluster, settings) as client:
            yield client


@contextlib.contextmanager
def connect(address, settings: ClusterSettings):
    """A client of `address` (or of a cluster object), failing in plain words instead of hanging."""
    from distributed import Client

    name = getattr(address, "scheduler_address", address)
    try:
        client = Client(address, timeout=settings.connect_timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        # dask retries even a refused connection until the timeout (a scheduler may be starting): the timeout
        # alone decides how soon a wrong address is said, so the message says where to set it
        raise ClusterError(f"cannot reach the dask scheduler at {name} within {settings.connect_timeout:g} s: "
                           f"{exc}. Is it running, and is the address right? If it is only slow to answer, raise "
                           f"cluster.connect_timeout in params.yaml (seconds)") from None
    with client:
        try:
            client.wait_for_workers(1, timeout=settings.worker_timeout)
        except TimeoutError:
            raise ClusterError(f"the dask scheduler at {name} has no workers after {settings.worker_timeout:g} s "
                               f"(cluster.worker_timeout): start some with `dask worker {name}`") from None
        check_code_versions(client)
        print(f"dask: {len(client.scheduler_info(n_workers=-1)['workers'])} workers at {name}; "
              f"dashboard {client.dashboard_link}", file=sys.stderr)
        yield client


def check_code_versions(client: "Client") -> None:
    """Refuse (rather than ship code) when a worker imports other project code than this client: shipped
    modules cannot replace ones a long-lived worker already imported, nor the libraries beneath them."""
    mine, here = code_version()
    theirs = client.run(version_probe())  # {worker address: (hash, folder)}
    wrong = sorted((w, v) for w, v in theirs.items() if v[0] != mine)
    if wrong:
        worker, (version, folder) = wrong[0]
        raise ClusterError(f"{len(wrong)} of {len(theirs)} dask workers run other code than this client: worker "
                           f"{worker} has version {version} from {folder}, the client {mine} from {here}. "
                           f"Restart the workers from the same checkout (or install the same version there).")


def slurm_options(slurm: SlurmSettings) -> dict:
    """dask-jobqueue SLURMCluster arguments: `cores` single-threaded workers per job, each with its share
    of the job's memory as its limit (a video that outgrows it restarts its worker and becomes a row)."""
    return {
        "cores": slurm.cores, "processes": slurm.cores, "memory": slurm.memory, "walltime": slurm.walltime,
        "queue": slurm.queue, "account": slurm.account, "python": slurm.python or sys.executable,
        "interface": slurm.interface, "job_extra_directives": list(slurm.job_extra_directives),
        "job_script_prologue": list(slurm.prologue),
    }


@contextlib.contextmanager
def slurm_cluster(slurm: SlurmSettings, submit: bool = True, **extra):
    """A SLURMCluster with `slurm.jobs` jobs submitted (`submit=False`: none, e.g. to read its job script)."""
    if submit and shutil.which("sbatch") is None:
        raise ClusterError("cluster.kind is slurm but `sbatch` is not on PATH: run on a SLURM login node, "
                           "or set cluster.kind: local")
    from dask_jobqueue import SLURMCluster

    with SLURMCluster(**slurm_options(slurm), **extra) as cluster:
        if submit:
            cluster.scale(jobs=slurm.jobs)
        yield cluster
