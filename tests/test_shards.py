"""crop + shards on the session's talking-face clips: WebDataset read-back, byte-identical reruns, resume, odd names,
lips and audio in step, and the collect index."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pipeline_project import CORPORA, ODD_NAME, copy_project, local_client, project_env


@pytest.fixture(scope="module")
def packed(packed_project):
    """The session's packed project (crop and collect done): read-only, tests that change it copy it."""
    return packed_project


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_all(root, corpus):
    import webdataset as wds

    urls = sorted(str(p) for p in (root / "data" / "shards" / corpus).glob("*.tar"))
    return list(wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode())


def test_webdataset_reads_every_sample_with_the_documented_fields(packed):
    for corpus in CORPORA:
        manifest = pd.read_parquet(packed / "data" / "shards" / corpus / "manifest.parquet")
        index = json.loads((packed / "data" / "shards" / corpus / "index.json").read_text())
        samples = read_all(packed, corpus)
        assert [s["__key__"] for s in samples] == manifest.key.tolist()
        assert sum(s["samples"] for s in index["shards"]) == len(samples)
        for shard in index["shards"]:
            path = packed / "data" / "shards" / corpus / shard["shard"]
            assert shard["sha256"] == sha(path) and shard["bytes"] == path.stat().st_size
            assert shard["samples"] <= 4  # crop.maxcount in the test params
        for s in samples:
            assert set(s) - {"__key__", "__url__", "__local_path__"} == {"video.npy", "audio.npy", "landmarks.npy",
                                                                         "json"}
            t = s["json"]["n_frames"]
            assert s["video.npy"].dtype == np.uint8 and s["video.npy"].shape == (t, 96, 96)
            assert s["audio.npy"].dtype == np.float32 and s["audio.npy"].shape == (t, 640)
            assert np.abs(s["audio.npy"]).max() <= 1.0 and np.abs(s["audio.npy"]).max() > 0.01
            assert s["landmarks.npy"].dtype == np.float32 and s["landmarks.npy"].shape == (t, 68, 2)
            meta = s["json"]
            assert "." not in s["__key__"] and s["__key__"] == f"{corpus}__{meta['video_id']}__{meta['segment']:04d}"
            for field in ("corpus", "video_id", "label", "method", "split", "fps", "sample_rate", "n_frames",
                          "sha256", "sync_offset", "sync_confidence", "interpolated_fraction", "landmark_backend",
                          "params_hash"):
                assert field in meta, field
            assert meta["fps"] == 25 and meta["sample_rate"] == 16000 and meta["landmark_backend"] == "dlib"
            assert re.fullmatch(rf"{meta['split']}-\d{{6}}\.tar", Path(s["__url__"]).name)  # in its split's shards
        assert set(manifest.split) <= {"train", "val", "test"}


def test_arrays_load_without_pickle(packed):
    import io
    import tarfile

    path = sorted((packed / "data" / "shards" / "gridt").glob("*.tar"))[0]
    with tarfile.open(path) as tar:
        for member in tar:
            if member.name.endswith(".npy"):
                np.load(io.BytesIO(tar.extractfile(member).read()), allow_pickle=False)
            assert member.mtime == 0 and member.uid == 0 and member.uname == ""


def test_dotted_non_ascii_video_name_survives(packed, clips):
    source = pd.read_parquet(packed / "data_manifests" / "cremadt.parquet").set_index("relpath")
    vid, twin = source.loc[ODD_NAME, "video_id"], source.loc[clips.cremad[0].name, "video_id"]  # twin: same clip
    samples = {s["__key__"]: s for s in read_all(packed, "cremadt")}
    assert f"cremadt__{vid}__0000" in samples
    assert np.array_equal(samples[f"cremadt__{vid}__0000"]["video.npy"], samples[f"cremadt__{twin}__0000"]["video.npy"])


def test_reruns_give_byte_identical_shards_and_a_killed_run_resumes(packed, tmp_path):
    from pipeline import stages

    root = copy_project(packed, tmp_path / "project")
    shards = root / "data" / "shards" / "gridt"
    first = {p.name: sha(p) for p in shards.iterdir()}
    mtimes = {p.name: p.stat().st_mtime_ns for p in shards.glob("*.tar")}
    with project_env(root), local_client() as client:
        stages.run("crop", "gridt", client)  # nothing changed: identical files, left untouched
        assert {p.name: sha(p) for p in shards.iterdir()} == first
        assert {p.name: p.stat().st_mtime_ns for p in shards.glob("*.tar")} == mtimes
        # a killed run: half a shard in a temporary file, one shard gone, the index gone
        victim = sorted(shards.glob("*.tar"))[-1]
        victim.unlink()
        (shards / f".tmp-999-{victim.name}").write_bytes(b"\0" * 1000)
        (shards / "index.json").unlink()
        stages.run("crop", "gridt", client)
        assert {p.name: sha(p) for p in shards.iterdir()} == first
        # from scratch, elsewhere: the same bytes
        for p in list(shards.iterdir()):
            p.unlink()
        stages.run("crop", "gridt", client)
        assert {p.name: sha(p) for p in shards.iterdir()} == first


def test_lips_and_audio_are_in_step(packed):
    """Inner-lip opening against per-frame audio energy, averaged over the GRID samples: the
    correlation-by-lag curve peaks within +-1 frame of 0 and is clearly higher there than at +-5."""
    lags = np.arange(-5, 6)
    curves = []
    for s in read_all(packed, "gridt"):
        lm, audio = s["landmarks.npy"].astype(np.float64), s["audio.npy"].astype(np.float64)
        opening = np.mean([np.linalg.norm(lm[:, a] - lm[:, b], axis=-1) for a, b in ((61, 67), (62, 66), (63, 65))],
                          axis=0)
        energy = np.log(np.mean(audio ** 2, axis=1) + 1e-8)
        curve = []
        for lag in lags:  # audio energy `lag` frames after the lips
            a = opening[max(0, -lag):len(opening) - max(0, lag)]
            b = energy[max(0, lag):len(energy) - max(0, -lag)]
            curve.append(np.corrcoef(a, b)[0, 1])
        curves.append(curve)
    mean = np.mean(curves, axis=0)
    print(dict(zip(lags.tolist(), np.round(mean, 3).tolist())))
    assert abs(lags[np.argmax(mean)]) <= 1
    assert mean[5] > max(mean[0], mean[-1]) + 0.1


def test_collect_lists_shards_by_role_and_follows_params(packed, tmp_path):
    from pipeline import collect
    from train.data import read_index

    root = copy_project(packed, tmp_path / "project")
    with project_env(root):
        collect.main([])
        pretrain = json.loads((root / "data" / "collect" / "pretrain.json").read_text())
        index = json.loads((root / "data" / "shards" / "gridt" / "index.json").read_text())
        assert [e["sha256"] for e in pretrain["train"] + pretrain["val"]] == [s["sha256"] for s in index["shards"]]
        assert all((root / e["path"]).exists() for e in pretrain["train"] + pretrain["val"])
        # label counts per shard add up to its samples (per-video labels may mix them)
        assert all(sum(e["labels"].values()) == e["samples"] and set(e["labels"]) == {"real"}
                   for e in pretrain["train"] + pretrain["val"])
        assert {e["corpus"] for e in json.loads((root / "data" / "collect" / "eval.json").read_text())["test"]} == \
            {"cremadt"}
        shards = read_index(root / "data" / "collect" / "pretrain.json", "train")  # the loader's reader
        assert sum(s.samples for s in shards) == sum(s["samples"] for s in index["shards"] if s["split"] == "train")
        params = (root / "params.yaml").read_text()
        head, rest = params.split("  cremadt:", 1)
        (root / "params.yaml").write_text(head + "resample:" + rest.split("resample:", 1)[1])
        collect.main([])
        assert json.loads((root / "data" / "collect" / "eval.json").read_text()) == {"train": [], "val": [],
                                                                                      "test": []}
        assert json.loads((root / "data" / "collect" / "pretrain.json").read_text()) == pretrain


# ------------------------------------------------------------------ what the samples are made of
def test_audio_and_landmarks_are_the_align_outputs_and_the_wav(packed):
    """Byte for byte what the method gives (unchanged by rendering in the crop stage): audio.npy is the
    resampled wav cut at the piece's frames, shifted by its audio_shift_frames, /32768; landmarks.npy is the
    align output's landmarks_crop; the manifest row is the json's."""
    import wave

    from preprocess.align import stage as align
    from preprocess.align.align_video import load_aligned
    from preprocess.resample import stage as resample

    with project_env(packed):
        for s in read_all(packed, "gridt"):
            meta = s["json"]
            arrays, _ = load_aligned(align.output_path("gridt", meta["video_id"]))
            rows = arrays["piece"] == meta["segment"]
            assert np.array_equal(s["landmarks.npy"], arrays["landmarks_crop"][rows])
            with wave.open(str(resample.output_paths("gridt", meta["video_id"])[1])) as wav:
                pcm = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
            start = (meta["start_frame"] + (meta["audio_shift_frames"] or 0)) * 640
            want = np.zeros(meta["n_frames"] * 640, np.int16)
            got = pcm[max(start, 0):start + len(want)]
            want[max(-start, 0):max(-start, 0) + len(got)] = got
            assert np.array_equal(s["audio.npy"].reshape(-1), want.astype(np.float32) / 32768)


def test_crops_match_an_independent_bilinear_warp_of_the_frames(packed):
    """The mouths are the full frames (gray) sampled at the inverse of the stored frame -> crop transform:
    scipy's bilinear interpolation in float64 gives the same picture within rounding (mean < 0.6 levels)."""
    import cv2
    from scipy.ndimage import map_coordinates

    from preprocess.align import geometry
    from preprocess.align import stage as align
    from preprocess.align.align_video import load_aligned
    from preprocess.media import read_frames
    from preprocess.resample import stage as resample

    errors = []
    with project_env(packed):
        for s in read_all(packed, "gridt")[:3]:
            meta = s["json"]
            arrays, _ = load_aligned(align.output_path("gridt", meta["video_id"]))
            rows = np.flatnonzero(arrays["piece"] == meta["segment"])
            frames = read_frames(resample.output_paths("gridt", meta["video_id"])[0])
            yy, xx = np.mgrid[0:96, 0:96].astype(np.float64)
            for i, row in enumerate(rows):
                gray = cv2.cvtColor(frames[arrays["frame"][row]], cv2.COLOR_RGB2GRAY).astype(np.float64)
                back = geometry.invert(arrays["crop_transforms"][row])
                src = geometry.apply(back, np.stack([xx.ravel(), yy.ravel()], -1))
                ref = map_coordinates(gray, [src[:, 1], src[:, 0]], order=1, mode="nearest").reshape(96, 96)
                errors.append(np.abs(s["video.npy"][i] - ref))
    errors = np.stack(errors)
    print(f"mean {errors.mean():.3f} max {errors.max():.2f}")
    assert errors.mean() < 0.6 and errors.max() < 8


# ------------------------------------------------------------------ incremental and resumable
def digest(root, corpus="gridt") -> dict:
    """sha256 of everything the crop stage hands on: shards, manifest, index (both copies), packed.json."""
    files = sorted((root / "data" / "shards" / corpus).iterdir()) + \
        [root / "data" / "crop" / corpus / name for name in ("index.json", "packed.json")]
    return {str(p.relative_to(root)): sha(p) for p in files}


@pytest.fixture(scope="module")
def grown(packed, clips, tmp_path_factory):
    """The packed project with one more GRID video (a copy under a new name) through align, crop not yet rerun:
    (its root, the new video's id, the digest a crop from scratch gives)."""
    from pipeline import stages
    from pipeline.corpora import get_corpus, load_params
    from pipeline.manifest import scan_corpus, write_manifest

    top = tmp_path_factory.mktemp("grown")
    root = copy_project(packed, top / "project")
    (root / "raw" / "grid" / "zz_added.mpg").symlink_to(clips.grid[0])
    with project_env(root), local_client() as client:
        before = set(pd.read_parquet(root / "data_manifests" / "gridt.parquet").video_id)
        write_manifest(scan_corpus(get_corpus("gridt", load_params())), root / "data_manifests" / "gridt.parquet")
        [added] = set(pd.read_parquet(root / "data_manifests" / "gridt.parquet").video_id) - before
        for stage in ("resample", "track", "align"):
            stages.run(stage, "gridt", client)
    fresh = copy_project(root, top / "fresh")
    import shutil

    shutil.rmtree(fresh / "data" / "shards" / "gridt")
    shutil.rmtree(fresh / "data" / "crop" / "gridt")
    with project_env(fresh), local_client() as client:
        assert all(r.status == "ok" for r in stages.run("crop", "gridt", client))
    return root, added, digest(fresh)


def test_adding_a_video_renders_only_it_and_gives_the_from_scratch_bytes(grown, tmp_path):
    from pipeline import stages

    source, added, fresh = grown
    root = copy_project(source, tmp_path / "project")
    timings = root / "logs" / "timings" / "crop@gridt.parquet"
    timings.unlink(missing_ok=True)
    with project_env(root), local_client() as client:
        records = stages.run("crop", "gridt", client)
    assert len(records) == 7 and all(r.status == "ok" for r in records)
    assert pd.read_parquet(timings).video_id.tolist() == [added]  # the only video worked on: rendered
    assert digest(root) == fresh
    assert not (root / "data" / "crop" / "gridt" / "rendered").exists()
    assert not (root / "data" / "shards" / "gridt" / ".staging").exists()


@pytest.mark.parametrize("kill_at", ["staging", "commit"])
def test_killed_crop_run_resumes_to_the_same_bytes(grown, tmp_path, monkeypatch, kill_at):
    """Killed while staging the new shards (the old ones whole, the rendered tars left) or half-way through
    putting them in place (some shards new, some old, no index): the next run gives the from-scratch bytes
    and renders nothing again."""
    import os

    from pipeline import stages
    from preprocess.crop import pack

    class Killed(BaseException):
        pass

    source, added, fresh = grown
    root = copy_project(source, tmp_path / "project")
    calls = {"n": 0}
    if kill_at == "staging":
        from preprocess import shardformat

        def dying(tmp, path):  # the first staged shard is complete, the second dies before its rename
            calls["n"] += 1
            if calls["n"] == 2:
                raise Killed
            real(tmp, path)
        real = shardformat.replace_durably
        monkeypatch.setattr(shardformat, "replace_durably", dying)
    else:
        real_replace = os.replace

        def dying(src, dst):  # one file is moved from the staging folder into place, then the process dies
            if Path(src).parent.name == pack.STAGING and Path(dst).parent.name != pack.STAGING:
                calls["n"] += 1
                if calls["n"] == 2:
                    raise Killed
            real_replace(src, dst)
        monkeypatch.setattr(pack.os, "replace", dying)
    with project_env(root), local_client() as client:
        with pytest.raises(Killed):
            stages.run("crop", "gridt", client)
        monkeypatch.undo()
        assert list((root / "data" / "crop" / "gridt" / "rendered").glob(f"{added}.*.tar"))  # left for the resume
        staging = root / "data" / "shards" / "gridt" / ".staging"
        assert (staging / "COMPLETE").exists() == (kill_at == "commit")
        assert (root / "data" / "shards" / "gridt" / "index.json").exists() == (kill_at == "staging")
        timings = root / "logs" / "timings" / "crop@gridt.parquet"
        timings.unlink()
        stages.run("crop", "gridt", client)
    assert not timings.exists()  # nothing rendered again: the new video's tar was still there
    assert digest(root) == fresh
    assert not staging.exists() and not (root / "data" / "crop" / "gridt" / "rendered").exists()


def test_member_names_split_as_webdataset_splits_them():
    from webdataset.tariterators import base_plus_ext

    from preprocess.shardformat import split_member_name

    names = ["c__v-1__0000.video.npy", "c__v__0001.json", "dir/sub/k.a.b", "nodot", "a.b/c", "x.", ".hidden",
             "dir/k.json", "ström talk.npy"]
    for name in names:
        assert split_member_name(name) == base_plus_ext(name), name
