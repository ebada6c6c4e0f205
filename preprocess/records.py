"""What crosses between the pipeline and a per-corpus stage: the corpus, one video's task, and its status record.

Every stage accounts for every video with ok / failed / skipped and a reason in plain words.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa

from preprocess import paths
from preprocess.fileio import rows_to_table, write_bytes_atomic, write_parquet_atomic

OK, FAILED, SKIPPED = "ok", "failed", "skipped"


def plain(value):
    """A value as JSON holds it: numpy scalars as Python numbers, NaN and None as None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


@dataclass(frozen=True)
class CorpusRef:
    """What a stage needs to know of a registered corpus (the registry itself lives in the pipeline)."""
    name: str
    role: str  # pretrain | finetune | eval
    label: str  # the corpus's label; a video's manifest row may override it
    raw_dir: Path


@dataclass
class VideoTask:
    """One video's work for a stage: everything the work function needs, picklable (it may run remotely)."""
    stage: str
    corpus: str
    video_id: str
    fingerprint: str  # inputs + params this result is made from; a stored record with another one is redone
    inputs: dict = field(default_factory=dict)  # stage-specific: paths and params
    outputs: list[str] = field(default_factory=list)  # files an ok result has; one gone means redo
    root: str = ""  # set by the runner: the project root, so remote workers write where the client reads
    code: str = ""  # set by the runner: the client's code version; a worker must match
    run: str = ""  # set by the runner: this run's id, names the task keys and the start claims


@dataclass
class StatusRecord:
    corpus: str
    video_id: str
    stage: str
    status: str  # ok | failed | skipped
    reason: str = ""  # plain words, empty when ok
    fingerprint: str = ""  # inputs + params this result was made from; a mismatch means redo
    # wall time spent on this video: in memory and the timing log, never in the stored record (nor compared)
    seconds: float = field(default=0.0, compare=False)
    details: dict = field(default_factory=dict)  # stage-specific figures (frames, samples, offsets ...)

    def to_json(self) -> bytes:
        # The record sits inside a DVC-hashed output: timings would make two identical runs hash differently.
        plain = {k: v for k, v in asdict(self).items() if k != "seconds"}
        return json.dumps(plain, sort_keys=True, ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> "StatusRecord":
        return cls(**json.loads(raw))


class StageFailure(Exception):
    """A deterministic, expected failure of one video: becomes a status row, never a crash or a retry."""

    def __init__(self, reason: str, status: str = FAILED, **details):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.details = details


def record_path(stage: str, corpus: str, video_id: str) -> Path:
    return paths.status_dir(stage, corpus) / f"{video_id}.json"


def write_record(record: StatusRecord) -> None:
    write_bytes_atomic(record_path(record.stage, record.corpus, record.video_id), record.to_json())


def read_record(stage: str, corpus: str, video_id: str) -> StatusRecord | None:
    path = record_path(stage, corpus, video_id)
    try:
        return StatusRecord.from_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, TypeError):
        return None  # unreadable record: treat the video as unfinished


def records_to_table(records: list[StatusRecord]) -> pa.Table:
    """One row per video, details flattened into `detail.*` columns (less tracebacks: they stay in the
    per-video records), sorted by video id.

    Identical for a fresh and a resumed run (so DVC hashes do not churn): every record goes through its JSON
    form first (a reused record was read back from it: tuples become lists, numpy scalars plain numbers), and
    the detail columns are sorted by name, whichever record brought them.
    """
    rows, detail_keys = [], set()
    for rec in sorted(records, key=lambda r: r.video_id):
        plain = json.loads(rec.to_json())
        details = plain.pop("details")
        details = {f"detail.{k}": v for k, v in details.items() if k != "traceback"}
        plain.update(details)
        detail_keys.update(details)
        rows.append(plain)
    columns = ["corpus", "video_id", "stage", "status", "reason", "fingerprint", *sorted(detail_keys)]
    return rows_to_table(rows, columns=columns)  # a NaN detail: null, as a missing one


def write_status_table(stage: str, corpus: str, records: list[StatusRecord]) -> None:
    write_parquet_atomic(paths.status_table_path(stage, corpus), records_to_table(records))
    worked = [r for r in records if r.seconds > 0]
    if worked:  # outside every DVC output: timings differ from run to run
        write_parquet_atomic(paths.project_root() / "logs" / "timings" / f"{stage}@{corpus}.parquet",
                             pa.table({"video_id": [r.video_id for r in worked],
                                       "status": [r.status for r in worked],
                                       "seconds": [r.seconds for r in worked]}))
