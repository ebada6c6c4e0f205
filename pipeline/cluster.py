"""The dask.distributed client every per-video stage runs on.

An existing cluster when an address is given (CLI flag or DASK_SCHEDULER_ADDRESS: a `dask scheduler`,
dask-jobqueue on SLURM, dask-kubernetes ...), otherwise an embedded LocalCluster of single-threaded worker
processes. Worker counts are runtime settings, never tracked params: they do not change results.
"""
from __future__ import annotations

import contextlib
import logging
import os

import dask
from distributed import Client, LocalCluster

# A video that kills its worker (a decoder crash) would otherwise be rescheduled onto 3 more workers and
# kill them too. The runner retries such videos itself, one at a time (pipeline/runner.py).
dask.config.set({"distributed.scheduler.allowed-failures": 0})


def default_workers() -> int:
    return int(os.environ.get("AVLIPS_WORKERS", 0)) or (os.cpu_count() or 1)


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None):
    address = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if address:
        with Client(address) as client:
            yield client
        return
    with LocalCluster(
        n_workers=workers or default_workers(),
        threads_per_worker=1,  # media libraries bring their own threads; one task per process
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",  # a free port, so parallel runs never clash
        silence_logs=logging.ERROR,
    ) as cluster, Client(cluster) as client:
        yield client
