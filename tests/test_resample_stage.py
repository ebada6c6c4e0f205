"""The resample stage on dask: every video accounted for, incremental reruns, resume after a kill."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import copy_clip, make_video

from preprocess import paths
from pipeline.registry import add_corpus
from pipeline import stages
from preprocess.resample import stage as resample


def stage_cmd(corpus: str, root) -> subprocess.Popen:
    env = {**os.environ, "AVLIPS_ROOT": str(root)}
    return subprocess.Popen([sys.executable, "-m", "pipeline", "stage", "resample", corpus, "--workers", "1"],
                            cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_every_video_gets_a_row_and_reruns_skip_finished(project, clips, dask_client):
    raw = project / "raw"
    copy_clip(clips.grid[0], raw, "good one.mpg")
    copy_clip(clips.cremad[0], raw, "émotion.flv")
    (raw / "empty.mp4").write_bytes(b"")
    (raw / "text.mp4").write_text("hello\n" * 100)
    make_video(raw / "silent.mp4", audio_rate=None)
    make_video(raw / "short.mp4", seconds=0.5)
    add_corpus("mixed", "raw", pattern="*.*", role="pretrain", label="real")

    records = stages.run("resample", "mixed", dask_client)
    table = pd.read_parquet(paths.status_table_path("resample", "mixed"))
    manifest = pd.read_parquet(paths.source_manifest_path("mixed"))
    assert sorted(table.video_id) == sorted(manifest.video_id)  # none lost
    by_name = dict(zip(manifest.relpath, manifest.video_id))
    status = table.set_index("video_id")
    expected = {"good one.mpg": ("ok", ""), "émotion.flv": ("ok", ""),
                "empty.mp4": ("failed", "empty file"), "text.mp4": ("failed", "not a readable video"),
                "silent.mp4": ("skipped", "no audio track"), "short.mp4": ("skipped", "too short")}
    for name, (state, reason) in expected.items():
        row = status.loc[by_name[name]]
        assert row.status == state and reason in row.reason, (name, row.status, row.reason)
    out = paths.stage_dir("resample", "mixed")
    assert sorted(p.stem for p in (out / "video").iterdir()) == sorted(
        by_name[n] for n in ("good one.mpg", "émotion.flv"))

    first = {r.video_id: r for r in records}
    again = stages.run("resample", "mixed", dask_client)
    assert {r.video_id: r for r in again} == first  # nothing redone: the same records

    copy_clip(clips.grid[1], raw)  # one new video: only it is processed
    add_corpus("mixed", "raw")
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "video").iterdir()}
    third = stages.run("resample", "mixed", dask_client)
    assert len(third) == 7
    assert {p.name: p.stat().st_mtime_ns for p in (out / "video").iterdir() if p.name in mtimes} == mtimes


def test_changed_params_redo_and_removed_videos_are_pruned(project, clips, dask_client):
    raw = project / "raw"
    for clip in clips.cremad[:2]:
        copy_clip(clip, raw)
    add_corpus("cremad", "raw", pattern="*.flv", role="eval", label="real")
    stages.run("resample", "cremad", dask_client)
    out = paths.stage_dir("resample", "cremad")
    before = {p.name: p.read_bytes() for p in (out / "video").iterdir()}

    params = (project / "params.yaml").read_text().replace("crf: 18", "crf: 30")
    (project / "params.yaml").write_text(params)
    stages.run("resample", "cremad", dask_client)
    after = {p.name: p.read_bytes() for p in (out / "video").iterdir()}
    assert before.keys() == after.keys()
    assert all(len(after[k]) < len(before[k]) for k in before)  # re-encoded at the new quality

    (raw / clips.cremad[0].name).unlink()
    add_corpus("cremad", "raw")
    records = stages.run("resample", "cremad", dask_client)
    missing = [r for r in records if r.status == "skipped"]
    assert len(missing) == 1 and "missing at the last scan" in missing[0].reason
    assert len(list((out / "video").iterdir())) == 1


@pytest.mark.slow  # a stage process (one worker: it runs the videos itself), killed, then rerun on its cluster
def test_killed_run_resumes_without_corrupt_outputs(project):
    raw = project / "raw"
    for i in range(8):  # 29.97 fps sources, so each one is re-encoded and takes a moment
        make_video(raw / f"clip{i}.mp4", seconds=8.0, fps="30000/1001", size="320x240")
    add_corpus("slow", "raw", pattern="*.mp4", role="pretrain", label="real")
    status_dir = paths.status_dir("resample", "slow")

    proc = stage_cmd("slow", project)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(status_dir.glob("*.json"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(status_dir.glob("*.json")))
    assert 2 <= done_before < 8, "the run should have been killed half-way"
    time.sleep(1.0)  # let orphaned worker processes notice their nanny is gone

    proc = stage_cmd("slow", project)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "8 ok, 0 failed, 0 skipped" in err
    reused = int(err.split("(")[-1].split(" already done")[0])
    assert reused >= done_before - 1  # finished work was kept (one may finish between our look and the kill)
    out = paths.stage_dir("resample", "slow")
    assert not [p for p in out.rglob("*") if p.name.startswith(".tmp-")]
    from preprocess.probe import count_video_packets

    for video in (out / "video").iterdir():
        assert count_video_packets(video) == 200


def test_status_command_counts_per_stage(project, clips, dask_client):
    copy_clip(clips.grid[0], project / "raw")
    (project / "raw" / "broken.mpg").write_bytes(b"\x00" * 100)
    add_corpus("grid", "raw", pattern="*.mpg")
    env = {**os.environ, "AVLIPS_ROOT": str(project)}
    before = subprocess.run([sys.executable, "-m", "pipeline", "status"], cwd=project, env=env,
                            capture_output=True, text=True)
    assert before.returncode == 0, before.stderr
    row = [line.split() for line in before.stdout.splitlines() if line.split()[:2] == ["grid", "resample"]][0]
    assert row[2:7] == ["2", "0", "0", "0", "2"]  # videos ok failed skipped pending
    stages.run("resample", "grid", dask_client)
    after = subprocess.run([sys.executable, "-m", "pipeline", "status"], cwd=project, env=env,
                           capture_output=True, text=True)
    row = [line.split() for line in after.stdout.splitlines() if line.split()[:2] == ["grid", "resample"]][0]
    assert row[2:7] == ["2", "1", "1", "0", "0"]


def crash_on_second(task):
    """A work function whose process dies on one video, like a decoder segfault would."""
    if task.video_id == "v1":
        os._exit(11)
    return {"n": 1}


def test_a_worker_that_dies_becomes_a_failed_row(project, dask_client):
    from pipeline.runner import VideoTask, run_stage

    tasks = [VideoTask("crashy", "c", f"v{i}", "fp") for i in range(8)]
    records = {r.video_id: r for r in run_stage("crashy", "c", tasks, crash_on_second, dask_client)}
    assert len(records) == 8
    # only the video that kills its worker by itself fails, not whatever ran beside it
    assert [v for v, r in records.items() if r.status != "ok"] == ["v1"]
    assert "worker process died" in records["v1"].reason
    dask_client.wait_for_workers(2, timeout=60)  # the nanny restarts the dead worker


def test_an_output_deleted_by_hand_is_redone(project, clips, dask_client):
    for clip in clips.grid[:2]:
        copy_clip(clip, project / "raw")
    add_corpus("grid", "raw", pattern="*.mpg")
    stages.run("resample", "grid", dask_client)
    video, audio = resample.output_paths("grid", resample_ids("grid")[0])
    audio.unlink()
    records = stages.run("resample", "grid", dask_client)
    assert audio.exists() and all(r.status == "ok" for r in records)


def resample_ids(corpus: str) -> list[str]:
    return sorted(pd.read_parquet(paths.source_manifest_path(corpus)).video_id)


def fails_unexpectedly_once(task):
    """A work function hitting a passing fault (say, a full disk) on its first run only."""
    marker = Path(task.inputs["marker"])
    if not marker.exists():
        marker.write_text("failed once")
        raise OSError(28, "No space left on device")
    return {"n": 1}


def test_unexpected_errors_are_rows_and_are_retried_next_run(project, dask_client):
    from pipeline.runner import VideoTask, run_stage

    tasks = [VideoTask("flaky", "c", "v0", "fp", {"marker": str(project / "marker")})]
    [first] = run_stage("flaky", "c", tasks, fails_unexpectedly_once, dask_client)
    assert first.status == "failed" and "unexpected error: OSError" in first.reason
    [second] = run_stage("flaky", "c", tasks, fails_unexpectedly_once, dask_client)
    assert second.status == "ok"
