"""Run one stage's per-video work on dask (or, for a few videos, in this process: cluster.inprocess_below),
skipping finished videos and recording every outcome.

A video is finished when its status record exists with the same fingerprint (inputs + params). Work
functions raise StageFailure for expected, deterministic failures; the wrapper turns those, and any
unexpected error, into status rows, so dask never retries them and one bad video never stops the rest. A
folder that cannot be written (preprocess/fileio.py: NotWritable, a full disk) stops the stage instead: no
record is written for the video it hit, so the next run does it again.

Safe on a shared scheduler: task keys carry a hash of the project root and the tasks' fingerprints plus a
per-run nonce, so runs never pick up each other's results; every task carries its project root and the
client's code version; and a video is started at most twice per run, whatever the scheduler's
allowed-failures, so one poisonous video kills at most two workers.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
import traceback
import uuid
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from tqdm import tqdm

from pipeline.cluster import ClusterError
from pipeline.codeversion import code_version
from preprocess import paths
from preprocess.fileio import NotWritable, prune_outputs, remove_leftover_tmp_files, writing_into
from preprocess.records import (FAILED, OK, StageFailure, StatusRecord, VideoTask, read_record, record_path, write_record,
                                write_status_table)
from preprocess.settings import json_hash

if TYPE_CHECKING:
    from distributed import Client

    from pipeline.cluster import StageCluster


STARTS_PER_RUN = 2  # a video that killed its worker is started once more, then it is a failed row


WorkFn = Callable[[VideoTask], dict]


def execute(work: WorkFn, task: VideoTask) -> StatusRecord:
    """Run `work` on one video, on a worker; the record is written there, so finished work survives a kill."""
    mine, here = code_version()
    if task.code != mine:  # a worker that joined after the check at connect time
        raise ClusterError(f"a dask worker runs other code (version {mine} from {here}) than the client "
                           f"({task.code}): restart the workers from the same checkout")
    os.environ["AVLIPS_ROOT"] = task.root  # workers may run elsewhere: write where the client reads
    with paths.thread_root(task.root):  # and a worker thread beside it may be running another project
        claim = _claim_start(task)
        if claim is None:  # the scheduler rescheduled a video that already killed workers twice
            return crash_record(task, "KilledWorker")
        try:
            return _run_work(work, task)
        finally:  # only a start that never got here (its process died) keeps its claim
            claim.unlink(missing_ok=True)


def _run_work(work: WorkFn, task: VideoTask) -> StatusRecord:
    start = time.perf_counter()
    try:
        details = work(task)
        status, reason = OK, details.pop("note", "")  # an ok video may still carry a remark
    except StageFailure as exc:
        status, reason, details = exc.status, exc.reason, exc.details
    except NotWritable:
        raise  # the folder's fault, not the video's: the stage stops, no record, the video is redone next run
    except Exception as exc:  # a bug or an unforeseen input: still a row, with enough to report it
        status, reason = FAILED, f"unexpected error: {type(exc).__name__}: {exc}"
        # may be passing (a network filesystem hiccup): unlike a StageFailure, tried again next run
        details = {"traceback": traceback.format_exc(limit=5), "retry": True}
    record = StatusRecord(task.corpus, task.video_id, task.stage, status, reason, task.fingerprint,
                          round(time.perf_counter() - start, 3), details)
    write_record(record)
    return record


def run_stage(stage: str, corpus: str, tasks: list[VideoTask], work: WorkFn,
              client: Client | StageCluster | None, settled: list[StatusRecord] = (),
              window_per_worker: int = 4) -> list[StatusRecord]:
    """Process `tasks` not already finished; `settled` are rows decided without work (e.g. missing sources).

    `client`: a dask client; a StageCluster, which picks this process or its cluster by the work left;
    or None, this process.

    Returns the records of every video, and writes the stage's status table.
    """
    remove_leftover_tmp_files(paths.stage_dir(stage, corpus))
    records: list[StatusRecord] = []
    todo: list[VideoTask] = []
    for task in tasks:
        previous = read_record(stage, corpus, task.video_id)
        if _still_valid(previous, task):
            records.append(previous)
        else:
            todo.append(task)
    for record in settled:
        if read_record(stage, corpus, record.video_id) != record:  # unchanged: no rewrite (each write fsyncs)
            write_record(record)
        records.append(record)

    reused = len(records) - len(settled)
    if todo:
        run, root, code = run_id(todo), str(paths.project_root()), code_version()[0]
        claims = _claims_dir(stage, corpus)
        crashed_before = claims.exists()  # left by a run killed mid-video: give this one the crash guard
        shutil.rmtree(claims, ignore_errors=True)
        if hasattr(client, "client_for"):
            client = client.client_for(len(todo), crashed_before)
        todo = [replace(t, run=run, root=root, code=code) for t in todo]
        try:
            records += _run_in_process(stage, corpus, todo, work) if client is None else \
                _run_on_dask(stage, corpus, todo, work, client, window_per_worker)
        finally:
            shutil.rmtree(claims, ignore_errors=True)  # not an output: never in the DVC-tracked folder
    prune_outputs([paths.status_dir(stage, corpus)], {t.video_id for t in tasks} | {r.video_id for r in settled})
    write_status_table(stage, corpus, records)
    counts = {s: sum(r.status == s for r in records) for s in ("ok", "failed", "skipped")}
    print(f"{stage}@{corpus}: {counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped "
          f"({reused} already done, {len(todo)} processed now)", file=sys.stderr)
    return records


def run_id(todo: list[VideoTask]) -> str:
    """Names this run's task keys: a hash of the project root and the work (fingerprints cover inputs and
    params), so the dashboard tells projects apart, plus a nonce, so even a rerun of the same work never
    meets a result the scheduler still holds from before."""
    project = json_hash((str(paths.project_root()), [(t.video_id, t.fingerprint) for t in todo]))[:10]
    return f"{project}-{uuid.uuid4().hex[:8]}"


def _still_valid(previous: StatusRecord | None, task: VideoTask) -> bool:
    """Finished with the same inputs and params, not an unexpected error (those are retried), and (when
    ok) its outputs are all still there: an output deleted by hand or lost on disk makes it unfinished."""
    if previous is None or previous.fingerprint != task.fingerprint or previous.details.get("retry"):
        return False
    return previous.status != OK or all(os.path.exists(p) for p in task.outputs)


def _claims_dir(stage: str, corpus: str):
    return paths.stage_dir(stage, corpus) / ".starts"


def _claim_start(task: VideoTask) -> Path | None:
    """Claim a start of this video in this run, on the shared filesystem (where the records go); None when
    STARTS_PER_RUN earlier starts died with their worker. A finished start removes its claim, so a video
    that is merely rerun (its result was lost with a worker that died later) is never refused. O_EXCL
    makes each claim atomic."""
    folder = _claims_dir(task.stage, task.corpus)
    with writing_into(folder):
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(STARTS_PER_RUN):
            claim = folder / f"{task.video_id}.{task.run}.{n}"
            try:
                os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                return claim
            except FileExistsError:
                continue
    return None


def _run_in_process(stage, corpus, todo, work) -> list[StatusRecord]:
    """The same per-video path as a worker's (claims, records), one video after another in this process:
    no worker start or model load per process. A video that kills the process leaves its claim, so the
    next run of the stage takes the cluster and its crash guard."""
    print(f"{stage}@{corpus}: {len(todo)} videos in this process (one worker, or fewer videos than "
          f"cluster.inprocess_below)", file=sys.stderr)
    results = []
    with tqdm(total=len(todo), desc=f"{stage}@{corpus}", unit="video", file=sys.stderr) as bar:
        for task in todo:
            results.append(execute(work, task))
            bar.update(1)
    return results


def _run_on_dask(stage, corpus, todo, work, client, window_per_worker) -> list[StatusRecord]:
    # A bounded window of futures in flight keeps the scheduler small for corpora of millions of videos.
    workers = len(client.scheduler_info(n_workers=-1).get("workers", {}))
    window = window_per_worker * max(1, workers)
    print(f"{stage}@{corpus}: {len(todo)} videos on {workers} dask workers; dashboard {client.dashboard_link}",
          file=sys.stderr)
    results, crashed = [], []
    with tqdm(total=len(todo), desc=f"{stage}@{corpus}", unit="video", file=sys.stderr) as bar:
        for task, outcome in _stream(client, work, todo, window, attempt=0):
            if isinstance(outcome, StatusRecord):
                results.append(outcome)
                bar.update(1)
            else:
                crashed.append(task)
        # A dying worker takes down whatever it was running: the culprit, and maybe an innocent video.
        # Each is retried alone, so only a video that kills its worker by itself is marked failed.
        for task in crashed:
            [(_, outcome)] = _stream(client, work, [task], window=1, attempt=1)
            died = not isinstance(outcome, StatusRecord)
            results.append(crash_record(task, type(outcome).__name__) if died else outcome)
            bar.update(1)
    return results


def _stream(client: Client, work: WorkFn, tasks: list[VideoTask], window: int, attempt: int):
    """Yield (task, record or the exception that lost its worker) as tasks finish, `window` at a time."""
    from distributed import as_completed

    pending = iter(tasks)
    by_key = {}

    def submit(task: VideoTask):
        key = f"{task.stage}-{task.corpus}-{task.video_id}-{attempt}-{task.run}"  # unique per project and run
        by_key[key] = task
        return client.submit(execute, work, task, key=key, pure=False, retries=0)

    futures = as_completed([submit(t) for _, t in zip(range(window), pending)])
    for future in futures:
        task = by_key.pop(future.key)
        try:
            outcome = future.result()
        except (ClusterError, NotWritable):
            raise  # a worker on other code, a folder that cannot be written: stop (the remaining futures are
            # released with the generator)
        except Exception as exc:  # KilledWorker: the process died (a decoder crash, out of memory)
            outcome = exc
        future.release()
        yield task, outcome
        nxt = next(pending, None)
        if nxt is not None:
            futures.add(submit(nxt))


def crash_record(task: VideoTask, error: str) -> StatusRecord:
    """A failed record written by the client (or by a worker refusing a third start), since the worker that
    died could not: the stage goes on, and the video is not retried blindly on every run."""
    record = StatusRecord(
        task.corpus, task.video_id, task.stage, FAILED,
        f"crashed its worker: the worker process died while processing this video, twice ({error}); "
        f"to retry it, delete {record_path(task.stage, task.corpus, task.video_id)}",
        task.fingerprint)
    write_record(record)
    return record
