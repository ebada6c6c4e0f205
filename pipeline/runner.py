"""Run one stage's per-video work on dask, skipping finished videos and recording every outcome.

A video is finished when its status record exists with the same fingerprint (inputs + params). Work
functions raise StageFailure for expected, deterministic failures; the wrapper turns those, and any
unexpected error, into status rows, so dask never retries them and one bad video never stops the rest.
"""
from __future__ import annotations

import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

from distributed import Client, as_completed
from tqdm import tqdm

from pipeline import paths
from pipeline.atomic import remove_leftover_tmp_files, write_parquet_atomic
from pipeline.status import FAILED, OK, StageFailure, StatusRecord, read_record, records_to_table, write_record


@dataclass
class VideoTask:
    stage: str
    corpus: str
    video_id: str
    fingerprint: str
    inputs: dict = field(default_factory=dict)  # stage-specific: paths and params, all picklable
    outputs: list[str] = field(default_factory=list)  # files an ok result has; one gone means redo
    root: str = field(default_factory=lambda: str(paths.project_root()))  # travels to remote workers


WorkFn = Callable[[VideoTask], dict]


def execute(work: WorkFn, task: VideoTask) -> StatusRecord:
    """Run `work` on one video, on a worker; the record is written there, so finished work survives a kill."""
    os.environ["AVLIPS_ROOT"] = task.root  # workers may run elsewhere: write where the client reads
    start = time.perf_counter()
    try:
        details = work(task)
        status, reason = OK, details.pop("note", "")  # an ok video may still carry a remark
    except StageFailure as exc:
        status, reason, details = exc.status, exc.reason, exc.details
    except Exception as exc:  # a bug or an unforeseen input: still a row, with enough to report it
        status, reason = FAILED, f"unexpected error: {type(exc).__name__}: {exc}"
        # may be passing (disk full, network filesystem): unlike a StageFailure, tried again next run
        details = {"traceback": traceback.format_exc(limit=5), "retry": True}
    record = StatusRecord(task.corpus, task.video_id, task.stage, status, reason, task.fingerprint,
                          round(time.perf_counter() - start, 3), details)
    write_record(record)
    return record


def run_stage(stage: str, corpus: str, tasks: list[VideoTask], work: WorkFn, client: Client,
              settled: list[StatusRecord] = (), window_per_worker: int = 4) -> list[StatusRecord]:
    """Process `tasks` not already finished; `settled` are rows decided without work (e.g. missing sources).

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
        write_record(record)
        records.append(record)

    reused = len(records) - len(settled)
    if todo:
        records += _run_on_dask(stage, corpus, todo, work, client, window_per_worker)
    _prune_stale_records(stage, corpus, {t.video_id for t in tasks} | {r.video_id for r in settled})
    write_status_table(stage, corpus, records)
    counts = {s: sum(r.status == s for r in records) for s in ("ok", "failed", "skipped")}
    print(f"{stage}@{corpus}: {counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped "
          f"({reused} already done, {len(todo)} processed now)", file=sys.stderr)
    return records


def _still_valid(previous: StatusRecord | None, task: VideoTask) -> bool:
    """Finished with the same inputs and params, not an unexpected error (those are retried), and (when
    ok) its outputs are all still there: an output deleted by hand or lost on disk makes it unfinished."""
    if previous is None or previous.fingerprint != task.fingerprint or previous.details.get("retry"):
        return False
    return previous.status != OK or all(os.path.exists(p) for p in task.outputs)


def _run_on_dask(stage, corpus, todo, work, client, window_per_worker) -> list[StatusRecord]:
    # A bounded window of futures in flight keeps the scheduler small for corpora of millions of videos.
    window = window_per_worker * max(1, len(client.scheduler_info().get("workers", {})))
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
            results.append(outcome if isinstance(outcome, StatusRecord) else _crash_record(task, outcome))
            bar.update(1)
    return results


def _stream(client: Client, work: WorkFn, tasks: list[VideoTask], window: int, attempt: int):
    """Yield (task, record or the exception that lost its worker) as tasks finish, `window` at a time."""
    pending = iter(tasks)
    by_key = {}

    def submit(task: VideoTask):
        key = f"{task.stage}-{task.corpus}-{task.video_id}-{attempt}"
        by_key[key] = task
        return client.submit(execute, work, task, key=key, pure=False, retries=0)

    futures = as_completed([submit(t) for _, t in zip(range(window), pending)])
    for future in futures:
        task = by_key.pop(future.key)
        try:
            outcome = future.result()
        except Exception as exc:  # KilledWorker: the process died (a decoder crash, out of memory)
            outcome = exc
        future.release()
        yield task, outcome
        nxt = next(pending, None)
        if nxt is not None:
            futures.add(submit(nxt))


def _crash_record(task: VideoTask, exc: Exception) -> StatusRecord:
    """A failed record written here, since the worker could not: the stage goes on, and the video is not
    retried blindly on every run."""
    record = StatusRecord(
        task.corpus, task.video_id, task.stage, FAILED,
        f"the worker process died while processing this video, twice ({type(exc).__name__}); to retry it, "
        f"delete {paths.status_dir(task.stage, task.corpus) / (task.video_id + '.json')}",
        task.fingerprint)
    write_record(record)
    return record


def _prune_stale_records(stage: str, corpus: str, keep: set[str]) -> None:
    prune_outputs([paths.status_dir(stage, corpus)], keep)


def prune_outputs(folders, keep: set[str]) -> None:
    """Delete the per-video files (named <video_id>.<ext>) in `folders` whose video is not in `keep`:
    a stage's outputs exist for exactly the videos it passed on."""
    for folder in folders:
        if folder.exists():
            for path in folder.iterdir():
                if path.is_file() and path.stem not in keep:
                    path.unlink()


def write_status_table(stage: str, corpus: str, records: list[StatusRecord]) -> None:
    table = records_to_table(records).drop(columns=["seconds"], errors="ignore")  # timing varies run to run
    table = table.drop(columns=[c for c in table.columns if c.endswith(".traceback")])
    write_parquet_atomic(paths.status_table_path(stage, corpus), table)
