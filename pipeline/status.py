"""Per-video status records: every stage accounts for every video with ok / failed / skipped and a reason."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from pipeline import paths
from pipeline.atomic import write_bytes_atomic

OK, FAILED, SKIPPED = "ok", "failed", "skipped"


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


def records_to_table(records: list[StatusRecord]) -> pd.DataFrame:
    """One row per video, details flattened into `detail.*` columns, sorted by video id.

    Identical for a fresh and a resumed run (so DVC hashes do not churn): every record goes through its JSON
    form first (a reused record was read back from it: tuples become lists, numpy scalars plain numbers), and
    the detail columns are sorted by name, whichever record brought them.
    """
    rows, detail_keys = [], set()
    for rec in sorted(records, key=lambda r: r.video_id):
        plain = json.loads(rec.to_json())
        details = plain.pop("details")
        plain.update({f"detail.{k}": v for k, v in details.items()})
        detail_keys.update(f"detail.{k}" for k in details)
        rows.append(plain)
    columns = ["corpus", "video_id", "stage", "status", "reason", "fingerprint", *sorted(detail_keys)]
    return pd.DataFrame(rows, columns=columns)
