"""A stage that cannot write (a full disk, a read-only folder) stops with one plain line naming the folder, leaves
no partial file, shard or record, and, once the cause is gone, resumes to the bytes of a run that never failed.

The fault is injected into the one atomic writer (preprocess/fileio.py): every output, record, table and shard
is fsynced there before its rename, and the disk "fills" once a given number of bytes has gone through it. The
tests sweep that number over every write of a stage, so each write in turn is the one that fails."""
from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest
from conftest import copy_clip, make_video

from preprocess import fileio


class DiskFills:
    """fsync_file that fails with `error` once more than `budget` bytes have been written through it (None:
    never), and records the size of every file it saw."""

    def __init__(self, budget: int | None = None, error: int = errno.ENOSPC):
        self.budget, self.error = budget, error
        self.sizes: list[int] = []
        self.failed: Path | None = None
        self._fsync = fileio.fsync_file

    def __call__(self, path: Path) -> None:
        size = os.path.getsize(path)
        if self.budget is not None and sum(self.sizes) + size > self.budget:
            self.failed = Path(path)
            raise OSError(self.error, os.strerror(self.error), str(path))
        self.sizes.append(size)
        self._fsync(path)


def tree(root: Path) -> dict[str, bytes]:
    """Every generated file (timings, which differ run to run by design, left out)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / "data").rglob("*")) if p.is_file()}


def stage_cli(stage: str, corpus: str) -> tuple[int, str]:
    from pipeline import cli

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = cli.main(["stage", stage, corpus])
    return rc, err.getvalue()


def sweep(base: Path, work: Path, stage: str, corpus: str, monkeypatch, error: int = errno.ENOSPC,
          check=lambda root: None) -> int:
    """Run `stage` from a copy of `base` once cleanly, then, from a fresh copy each time, with the disk filling
    half-way through each of its writes in turn: one line, nothing partial left, and a rerun gives the clean
    bytes. Returns how many writes were swept."""
    def fresh() -> Path:
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(base, work, symlinks=True)
        return work

    monkeypatch.setenv("AVLIPS_ROOT", str(work))
    monkeypatch.chdir(base.parent)
    recorder = DiskFills()
    fresh()
    with monkeypatch.context() as m:
        m.setattr(fileio, "fsync_file", recorder)
        assert stage_cli(stage, corpus)[0] == 0
    clean = tree(work)
    assert recorder.sizes, "the stage wrote nothing"
    for k, size in enumerate(recorder.sizes):
        fresh()
        fault = DiskFills(sum(recorder.sizes[:k]) + size // 2, error)
        with monkeypatch.context() as m:
            m.setattr(fileio, "fsync_file", fault)
            rc, err = stage_cli(stage, corpus)
        assert fault.failed is not None and rc == 2, (k, err[-2000:])
        line = err.strip().splitlines()[-1]
        folder = fault.failed.parent
        reason = fileio.WRITE_FAULTS[error]
        assert line == (f"error: cannot write to {folder}: {reason}. Free some space or make the folder writable, "
                        f"then run the stage again: it goes on from where it stopped"), (k, line)
        assert "Traceback" not in err
        assert not [p for p in work.rglob(f"{fileio.TMP_MARK}*")], k  # no half-written file
        check(work)
        assert stage_cli(stage, corpus)[0] == 0, k  # the cause gone: the same bytes as a run that never failed
        assert tree(work) == clean, k
    return len(recorder.sizes)


def test_resample_stops_on_a_full_disk_and_resumes_to_the_same_bytes(project, tmp_path, monkeypatch):
    from pipeline.registry import add_corpus

    for i, name in enumerate(("a.mp4", "b.mp4", "c.mp4")):  # re-encoded (30 fps) and copied (25 fps) videos
        make_video(project / "raw" / name, seconds=1.2, fps="30" if i else "25", size=f"{160 + 16 * i}x120")
    add_corpus("c", "raw", pattern="*.mp4")

    def records_have_outputs(root: Path) -> None:  # every record there is, is for whole outputs
        for record in (root / "data" / "resample" / "c" / "status").glob("*.json"):
            assert (root / "data" / "resample" / "c" / "video" / f"{record.stem}.mkv").is_file()

    writes = sweep(project, tmp_path / "run", "resample", "c", monkeypatch, check=records_have_outputs)
    assert writes >= 3 * 3  # per video its video, audio and record; then the tables


def test_a_read_only_output_folder_is_one_line(project, tmp_path, monkeypatch):
    """EACCES, as a folder the user may not write gives (root, running the tests, may write anywhere)."""
    from pipeline.registry import add_corpus

    make_video(project / "raw" / "a.mp4", seconds=1.2)
    add_corpus("c", "raw", pattern="*.mp4")
    assert sweep(project, tmp_path / "run", "resample", "c", monkeypatch, errno.EACCES) >= 3


def test_a_write_fault_in_ffmpeg_or_on_an_input_is_told_apart(tmp_path):
    """ffmpeg's own "No space left on device" is the OSError a write of ours raises; a permission error on a
    file outside the output folder (an input) is not the folder's fault."""
    from preprocess.ffmpeg import run_ffmpeg

    full = Path("/dev/full")  # every write there fails with ENOSPC
    if not full.exists():
        pytest.skip("no /dev/full on this system")
    with pytest.raises(fileio.NotWritable, match=f"cannot write to {tmp_path}: no space left on the device"):
        with fileio.writing_into(tmp_path):
            run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=64x64:rate=25:duration=1", "-f", "rawvideo", str(full)])
    with pytest.raises(PermissionError):
        with fileio.writing_into(tmp_path / "out"):
            raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "input.mp4"))


@pytest.mark.slow
def test_crop_stops_on_a_full_disk_without_a_partial_shard_and_resumes(clips, project, tmp_path, monkeypatch):
    """Two real CREMA-D clips through resample -> track -> align, then the crop stage with the disk filling
    at each of its writes: per-video tars, staged shards, tables, the commit, the records."""
    from pipeline import stages
    from pipeline.registry import add_corpus

    for clip in clips.cremad[:2]:
        copy_clip(clip, project / "raw")
    add_corpus("c", "raw", pattern="*.flv", role="eval", label="fake", method="Emotion")
    for name in ("resample", "track", "align"):
        assert [r.status for r in stages.run(name, "c")] == ["ok", "ok"]
    (project / "params.yaml").write_text((project / "params.yaml").read_text().replace(
        "maxcount: 1000 ", "maxcount: 1    "))  # one sample a shard: several shards to fill the disk on

    def whole_shards_only(root: Path) -> None:
        shards = root / "data" / "shards" / "c"
        staging = shards / ".staging"
        if not (staging / "COMPLETE").exists():  # failed while staging: nothing of it is left
            assert not staging.exists() and not list(shards.glob("*.tar"))
        for shard in shards.glob("*.tar"):  # failed while committing a complete set: whole shards, rolled forward
            with tarfile.open(shard) as tar:
                assert [m.size for m in tar.getmembers()]

    writes = sweep(project, tmp_path / "run", "crop", "c", monkeypatch, check=whole_shards_only)
    assert writes >= 2 * 2 + 2  # per video its tar and record, at least two shards
