"""crop + shards on the real clips: WebDataset read-back, byte-identical reruns, resume, odd names,
lips and audio in step, and the collect index."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pipeline_project import CORPORA, MISSING, ODD_NAME, ODD_TWIN, copy_project, packed_project, project_env

pytestmark = pytest.mark.skipif(bool(MISSING), reason=MISSING)


@pytest.fixture(scope="module")
def packed():
    """The session's packed project (crop and collect done): read-only, tests that change it copy it."""
    return packed_project()


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


def test_dotted_non_ascii_video_name_survives(packed):
    source = pd.read_parquet(packed / "data_manifests" / "cremadt.parquet").set_index("relpath")
    vid, twin = source.loc[ODD_NAME, "video_id"], source.loc[ODD_TWIN.name, "video_id"]  # twin: same clip
    samples = {s["__key__"]: s for s in read_all(packed, "cremadt")}
    assert f"cremadt__{vid}__0000" in samples
    assert np.array_equal(samples[f"cremadt__{vid}__0000"]["video.npy"], samples[f"cremadt__{twin}__0000"]["video.npy"])


def test_reruns_give_byte_identical_shards_and_a_killed_run_resumes(packed, tmp_path):
    from pipeline import stages

    root = copy_project(packed, tmp_path / "project")
    shards = root / "data" / "shards" / "gridt"
    first = {p.name: sha(p) for p in shards.iterdir()}
    mtimes = {p.name: p.stat().st_mtime_ns for p in shards.glob("*.tar")}
    with project_env(root):
        stages.run("crop", "gridt")  # nothing changed: identical files, left untouched
        assert {p.name: sha(p) for p in shards.iterdir()} == first
        assert {p.name: p.stat().st_mtime_ns for p in shards.glob("*.tar")} == mtimes
        # a killed run: half a shard in a temporary file, one shard gone, the index gone
        victim = sorted(shards.glob("*.tar"))[-1]
        victim.unlink()
        (shards / f".tmp-999-{victim.name}").write_bytes(b"\0" * 1000)
        (shards / "index.json").unlink()
        stages.run("crop", "gridt")
        assert {p.name: sha(p) for p in shards.iterdir()} == first
        # from scratch, elsewhere: the same bytes
        for p in list(shards.iterdir()):
            p.unlink()
        stages.run("crop", "gridt")
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
