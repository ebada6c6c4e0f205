"""The per-corpus DVC stages, by name, and the one way each runs (`python -m pipeline stage NAME CORPUS`).

Stage NAME's code is `preprocess/NAME/stage.py`. Each such module says which stage feeds it (UPSTREAM) and
builds its per-video tasks (`plan`), does one video (`work`) and tidies the corpus afterwards (`finish`, with the
stage's settings, which
may return the records it changed); a stage may also tidy what a killed run left before planning (`prepare`).
This module does what is the same for all:
read params, the corpus and its manifest, and turn every video the upstream stage did not pass on into a
`skipped` row naming the upstream reason, so that rule lives in one place.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from pipeline.manifest import read_manifest_rows
from pipeline.corpora import get_corpus, load_params
from pipeline.runner import run_stage
from preprocess import paths
from preprocess.records import OK, SKIPPED, CorpusRef, StatusRecord, read_record

PER_CORPUS_STAGES = ("resample", "track", "align", "crop")


def stage_module(name: str) -> ModuleType:
    if name not in PER_CORPUS_STAGES:
        raise ValueError(f"unknown stage {name!r}; the per-corpus stages are {', '.join(PER_CORPUS_STAGES)}")
    return importlib.import_module(f"preprocess.{name}.stage")


def run(name: str, corpus_name: str, client=None) -> list[StatusRecord]:
    """Run stage `name` on every video of a corpus; returns one record per video of the manifest."""
    stage = stage_module(name)
    params = load_params()
    corpus, settings, videos, settled = _inputs(stage, name, corpus_name, params, manifest_rows(corpus_name))
    if hasattr(stage, "prepare"):
        stage.prepare(corpus)
    tasks, decided = stage.plan(corpus, videos, settings, params)
    records = run_stage(name, corpus_name, tasks, stage.work, client, settled + decided)
    return stage.finish(corpus, records, settings) or records


def manifest_rows(corpus_name: str) -> list[dict]:
    """The corpus's source manifest, one dict per video, sorted by video id."""
    return read_manifest_rows(paths.source_manifest_path(corpus_name))


def _inputs(stage: ModuleType, name: str, corpus_name: str, params: dict, rows: list[dict],
            upstream_of=read_record):
    """(corpus, stage settings, [(manifest row, upstream record)] to plan, rows settled by the upstream rule).
    `upstream_of(stage, corpus, video_id)` gives the upstream record (default: the stored one)."""
    registered = get_corpus(corpus_name, params)
    corpus = CorpusRef(registered.name, registered.role, registered.label, registered.raw_path())
    settings = stage.settings(params, corpus)  # a bad section stops here; a missing model in plan, before any video
    videos, settled = [], []
    for row in rows:
        upstream = upstream_of(stage.UPSTREAM, corpus_name, row["video_id"]) if stage.UPSTREAM else None
        if stage.UPSTREAM and (upstream is None or upstream.status != OK):
            settled.append(upstream_skip(name, stage.UPSTREAM, corpus_name, row["video_id"], upstream))
        else:
            videos.append((row, upstream))
    return corpus, settings, videos, settled


def expected_fingerprints(corpus_name: str, params: dict, rows: list[dict]
                          ) -> tuple[dict[str, dict[str, str | None]], dict[str, dict[str, StatusRecord | None]],
                                     dict[str, str]]:
    """What every stage would compute now, per video: the fingerprint of its task (through the stage's own
    `plan`; nothing is run or changed), or None for a video it would settle without work (its upstream stage
    does not pass it on). Stages are followed in order: a stage sees its upstream records as they would be
    after a rerun (a stale upstream record counts as redone with its new fingerprint), so a changed source
    or upstream param makes every stage below it stale too. Returns ({stage: {video_id: fingerprint}},
    {stage: {video_id: its stored record or None}}, {stage: why it could not be computed}) - a stage that cannot
    be planned leaves those below unchecked. Each stored record is read once."""
    now: dict[tuple[str, str], StatusRecord | None] = {}
    expected, stored, errors = {}, {}, {}
    for name in PER_CORPUS_STAGES:
        stage = stage_module(name)
        try:
            corpus, settings, videos, settled = _inputs(stage, name, corpus_name, params, rows,
                                                        lambda up, _, vid: now.get((up, vid)))
            tasks, decided = stage.plan(corpus, videos, settings, params)
        except Exception as exc:  # bad params, a missing model: say so, check nothing below it
            errors.update({n: f"{name}: {exc}" for n in PER_CORPUS_STAGES[PER_CORPUS_STAGES.index(name):]})
            break
        stage_expected = {r.video_id: None for r in settled + decided}
        stage_expected.update({t.video_id: t.fingerprint for t in tasks})
        expected[name] = stage_expected
        stored[name] = {row["video_id"]: read_record(name, corpus_name, row["video_id"]) for row in rows}
        for record in settled + decided:
            now[name, record.video_id] = record
        for task in tasks:
            kept = stored[name][task.video_id]
            fresh = kept is not None and not is_stale(kept, task.fingerprint)
            now[name, task.video_id] = kept if fresh else StatusRecord(corpus_name, task.video_id, name, OK,
                                                                       fingerprint=task.fingerprint)
    return expected, stored, errors


def is_stale(record: StatusRecord, expected: str | None) -> bool:
    """A stored record the stage would not keep: another fingerprint than its task's now, or ok although the
    stage would now settle the video without work (its upstream stage no longer passes it on)."""
    if expected is None:
        return record.status == OK
    return record.fingerprint != expected


def upstream_skip(stage: str, upstream_stage: str, corpus: str, video_id: str,
                  upstream: StatusRecord | None) -> StatusRecord:
    """The row of a video the upstream stage did not pass on: its reason, chained ("track stage failed: ...")."""
    why = f"not through the {upstream_stage} stage yet (run it first)" if upstream is None else \
        f"{upstream_stage} stage {upstream.status}: {upstream.reason}"
    return StatusRecord(corpus, video_id, stage, SKIPPED, why, details={"upstream": upstream_stage})


def run_demo(workers: int | None = None) -> None:
    """The `demo` stage: generate the demo corpora (preprocess/demo/stage.py), then write their manifests."""
    from pipeline.manifest import scan_corpus, write_manifest
    from preprocess.demo import stage as demo

    params = load_params()
    for name in demo.generate(params, workers):
        write_manifest(scan_corpus(get_corpus(name, params)), paths.source_manifest_path(name))
