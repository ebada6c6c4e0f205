"""Corpus registry: add, rescan, list, remove, and every user error with a clear message."""
from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest
from conftest import copy_clip

from preprocess import paths
from pipeline.manifest import COLUMNS, read_manifest, video_id_for
from pipeline.corpora import load_corpora
from pipeline.registry import RegistryError, add_corpus, list_corpora, remove_corpus


def cli(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "AVLIPS_ROOT": str(cwd)}
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, env=env, capture_output=True,
                          text=True)


def test_video_ids_are_stable_dot_free_and_unique():
    ids = [video_id_for(p) for p in ["a/clip.1.mp4", "a/clip_1.mp4", "é t/ü.mp4", "x.y.z/ v .mp4"]]
    assert all("." not in i and i.isascii() for i in ids)
    assert len(set(ids)) == len(ids)
    assert video_id_for("a/clip.1.mp4") == ids[0]


def test_add_writes_registry_keeping_comments_and_manifest(project, clips):
    raw = project / "raw"
    for clip in clips.grid[:4]:
        copy_clip(clip, raw / clip.stem[:2])  # two-letter folders act as speakers
    add_corpus("grid", "raw", pattern="**/*.mpg", role="pretrain", label="real")

    text = (project / "params.yaml").read_text()
    assert "# Parameters of every stage" in text and "resample:" in text  # comments and sections kept
    corpus = load_corpora()["grid"]
    assert (corpus.role, corpus.label, corpus.pattern) == ("pretrain", "real", "**/*.mpg")

    manifest = read_manifest(paths.source_manifest_path("grid"))
    assert list(manifest.columns) == COLUMNS
    assert len(manifest) == 4 and set(manifest.scan_state) == {"new"}
    assert manifest.video_id.is_unique and not manifest.video_id.str.contains(r"\.").any()
    assert (manifest.fps == 25).all() and (manifest.width == 360).all() and (manifest.audio_rate == 44100).all()
    assert manifest.sha256.str.len().eq(64).all()
    assert set(manifest.group) == {clip.stem[:2] for clip in clips.grid[:4]}
    # a group never straddles two splits
    assert (manifest.groupby("group").split.nunique() == 1).all()


def test_group_by_regex_and_split_fractions(project, clips):
    raw = project / "raw"
    for i, clip in enumerate(clips.grid):
        for take in range(3):
            copy_clip(clip, raw, f"spk{i}_take{take}.mpg")
    add_corpus("grid", "raw", pattern="*.mpg", role="finetune", label="real", group_by=r"^(spk\d+)_")
    manifest = read_manifest(paths.source_manifest_path("grid"))
    assert sorted(manifest.group.unique()) == [f"spk{i}" for i in range(len(clips.grid))]
    assert (manifest.groupby("group").split.nunique() == 1).all()
    assert set(manifest.split) <= {"train", "val", "test"}


def test_rescan_adds_marks_changed_and_missing_and_keeps_ids(project, clips):
    raw = project / "raw"
    for clip in clips.grid[:3]:
        copy_clip(clip, raw)
    add_corpus("grid", "raw", pattern="*.mpg")
    first = read_manifest(paths.source_manifest_path("grid")).set_index("relpath")

    (raw / clips.grid[0].name).unlink()  # vanished
    changed = raw / clips.grid[1].name
    changed.write_bytes(clips.grid[3].read_bytes())  # same name, new content
    copy_clip(clips.grid[4], raw, "new clip é.mpg")  # new, with a space and non-ASCII
    add_corpus("grid", "raw")  # rescan keeps pattern, role and label

    second = read_manifest(paths.source_manifest_path("grid")).set_index("relpath")
    assert second.loc[clips.grid[0].name, "scan_state"] == "missing"
    assert second.loc[clips.grid[1].name, "scan_state"] == "changed"
    assert second.loc[clips.grid[1].name, "previous_sha256"] == first.loc[clips.grid[1].name, "sha256"]
    assert second.loc[clips.grid[2].name, "scan_state"] == "unchanged"
    assert second.loc["new clip é.mpg", "scan_state"] == "new"
    for rel in first.index:
        assert second.loc[rel, "video_id"] == first.loc[rel, "video_id"]
        assert second.loc[rel, "split"] == first.loc[rel, "split"]
    assert load_corpora()["grid"].pattern == "*.mpg"


def test_list_and_remove(project, clips):
    copy_clip(clips.grid[0], project / "raw")
    add_corpus("grid", "raw", pattern="*.mpg")
    listing = list_corpora()
    assert listing.loc[0, "name"] == "grid" and listing.loc[0, "videos"] == 1
    assert listing.loc[0, "hours"] == pytest.approx(3 / 3600, abs=1e-3)
    remove_corpus("grid")
    assert "grid" not in load_corpora()
    assert not paths.source_manifest_path("grid").exists()
    with pytest.raises(RegistryError, match="not registered"):
        remove_corpus("grid")


@pytest.mark.parametrize("name", ["Vox2", "vox2.dev", "_vox", "vox 2", "", "vöx", "vox__2"])
def test_bad_names_are_refused(project, clips, name):
    copy_clip(clips.grid[0], project / "raw")
    with pytest.raises(RegistryError, match="invalid corpus name"):
        add_corpus(name, "raw", pattern="*.mpg")
    assert "corpora: {}" in (project / "params.yaml").read_text()  # nothing half-written


@pytest.mark.parametrize("raw_dir, kwargs, message", [
    ("nowhere", {}, "does not exist"),
    ("raw/clip.mpg", {}, "is not a folder"),
    ("raw", {"pattern": "*.mp4"}, "matches no files"),
    ("raw", {"pattern": "/abs/*.mpg"}, "invalid pattern"),
    ("raw", {"pattern": "*.mpg", "group_by": "(["}, "not a valid regular expression"),
    ("raw", {"pattern": "*.mpg", "group_by": "^spk"}, "matches no group"),
    ("raw", {"pattern": "*.mpg", "method": "FaceSwap"}, "only goes with --label fake"),
])
def test_bad_arguments_are_explained(project, clips, raw_dir, kwargs, message):
    copy_clip(clips.grid[0], project / "raw", "clip.mpg")
    with pytest.raises(RegistryError, match=message):
        add_corpus("grid", raw_dir, **kwargs)
    assert not paths.source_manifest_path("grid").exists()


def test_cli_round_trip_and_errors(project, clips):
    copy_clip(clips.grid[0], project / "raw")
    added = cli("corpus", "add", "grid", "raw", "--pattern", "*.mpg", "--role", "eval", "--label", "fake",
                "--method", "Wav2Lip", cwd=project)
    assert added.returncode == 0, added.stderr
    assert "1 videos" in added.stdout and "test" in added.stdout
    listed = cli("corpus", "list", cwd=project)
    assert "grid" in listed.stdout and "Wav2Lip" in listed.stdout
    bad = cli("corpus", "add", "Bad.Name", "raw", cwd=project)
    assert bad.returncode == 2 and "error: invalid corpus name" in bad.stderr and "Traceback" not in bad.stderr
    removed = cli("corpus", "remove", "grid", cwd=project)
    assert removed.returncode == 0 and "removed corpus grid" in removed.stdout
    assert not (project / "data_manifests" / "grid.parquet").exists()


def test_official_split_file_assigns_groups(project, clips):
    raw = project / "raw"
    for i, clip in enumerate(clips.grid[:4]):
        copy_clip(clip, raw, f"{i:03d}_take.mpg")
    (project / "splits.csv").write_text("group,split\n000,train\n001,val\n002,test\n003,test\n")
    add_corpus("ffpp", "raw", pattern="*.mpg", role="finetune", label="real", group_by=r"^(\d{3})_",
               split_file="splits.csv")
    manifest = read_manifest(paths.source_manifest_path("ffpp")).set_index("group")
    assert manifest.split.to_dict() == {"000": "train", "001": "val", "002": "test", "003": "test"}
    assert load_corpora()["ffpp"].split.file == "splits.csv"

    (project / "splits.csv").write_text("group,split\n000,train\n001,val\n")
    with pytest.raises(ValueError, match="group '002' is not in the split file"):
        add_corpus("ffpp", "raw")
    (project / "splits.csv").write_text("group,split\n000,holdout\n")
    with pytest.raises(ValueError, match="'holdout' for group '000' is not one of train, val, test"):
        add_corpus("ffpp", "raw")
    with pytest.raises(RegistryError, match="split file nowhere.csv does not exist"):
        add_corpus("ffpp", "raw", split_file="nowhere.csv")
    # a failed rescan leaves the registry and manifest as they were
    assert load_corpora()["ffpp"].split.file == "splits.csv"
    assert read_manifest(paths.source_manifest_path("ffpp")).split.tolist() == ["train", "val", "test", "test"]


def test_per_video_labels_override_the_corpus_label(project, clips):
    raw = project / "raw"
    for clip in clips.grid[:3]:
        copy_clip(clip, raw)
    names = [clip.name for clip in clips.grid[:3]]
    (project / "labels.csv").write_text(f"relpath,label,method\n{names[1]},fake,Wav2Lip\n{names[2]},fake,\n")
    add_corpus("avceleb", "raw", pattern="*.mpg", role="finetune", label="real", labels="labels.csv")
    manifest = read_manifest(paths.source_manifest_path("avceleb")).set_index("relpath")
    assert manifest.label.to_dict() == {names[0]: "real", names[1]: "fake", names[2]: "fake"}
    assert manifest.loc[names[1], "method"] == "Wav2Lip" and pd.isna(manifest.loc[names[2], "method"])

    (project / "labels.csv").write_text("relpath,label\nelsewhere.mpg,fake\n")
    with pytest.raises(ValueError, match="1 row.* not in the corpus, e.g. 'elsewhere.mpg'"):
        add_corpus("avceleb", "raw")
    (project / "labels.csv").write_text(f"relpath,label\n{names[0]},forged\n")
    with pytest.raises(ValueError, match="'forged'.*not one of real, fake"):
        add_corpus("avceleb", "raw")
